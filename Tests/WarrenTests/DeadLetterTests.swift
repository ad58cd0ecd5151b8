import Foundation
import Testing
import WarrenAMQP

@testable import Warren

@Suite("A dead letter's headers, written and read by one type")
struct DeadLetterTests {
    func parked(reason: DeadLetterReason = DeadLetterReason(kind: .rejected, detail: "no such mailbox")) -> DeadLetter {
        let failed: AMQPTable = [
            "tenant": "acme", WarrenHeader.messageType: "email.welcome", WarrenHeader.publishedAt: .int64(1_000),
            WarrenHeader.firstEnqueuedAt: .int64(1_000), WarrenHeader.attempt: .int64(3),
            WarrenHeader.firstFailureAt: .int64(2_000), WarrenHeader.lastFailureAt: .int64(5_000),
            WarrenHeader.errorType: "Mailer.Bounce", "x-death": .array([]),
        ]
        let headers = DeadLetter.headers(
            failed, reason: reason, exchange: "orders", routingKey: "emails.new", queue: "emails", attempts: 3,
            host: "h1")
        return DeadLetter(body: Array("{}".utf8), properties: AMQPProperties(headers: headers, messageID: "m-1"))
    }

    @Test func whatAWorkerWritesReadsBackField() {
        let letter = parked()
        #expect(letter.reason == DeadLetterReason(kind: .rejected, detail: "no such mailbox"))
        #expect(letter.attempts == 3)
        #expect(
            letter.originalExchange == "orders" && letter.originalRoutingKey == "emails.new"
                && letter.originalQueue == "emails")
        #expect(
            letter.firstFailedAt == Date(timeIntervalSince1970: 2)
                && letter.lastFailedAt == Date(timeIntervalSince1970: 5))
        #expect(letter.errorType == "Mailer.Bounce" && letter.host == "h1")
        #expect(letter.messageID == "m-1" && letter.messageType == "email.welcome")
    }

    @Test func aLongDetailIsCutToWhatAHeaderCarries() {
        let letter = parked(
            reason: DeadLetterReason(kind: .permanentError, detail: String(repeating: "x", count: 10_000)))
        #expect(letter.reason?.detail.count == DeadLetterReason.longestDetail)
    }

    @Test func aReplayStartsAgainAtTheFirstAttemptWithAFreshPublishTime() {
        let now = Date(timeIntervalSince1970: 9)
        let headers = parked().replayProperties(now: now).headers ?? [:]
        #expect(headers["tenant"] == "acme", "the application's headers stay")
        #expect(
            headers[WarrenHeader.messageType] == "email.welcome"
                && headers[WarrenHeader.firstEnqueuedAt] == .int64(1_000))
        for gone in [
            WarrenHeader.attempt, WarrenHeader.attempts, WarrenHeader.reason, WarrenHeader.lastFailureAt,
            WarrenHeader.errorType, "x-death",
        ] {
            #expect(headers[gone] == nil, "\(gone) is dropped")
        }
        #expect(headers[WarrenHeader.publishedAt] == .int64(9_000), "the queue wait counts from the replay")
        #expect(headers[WarrenHeader.originalPublishedAt] == .int64(1_000))
        let twice = DeadLetter(body: [], properties: AMQPProperties(headers: headers)).replayProperties(
            now: Date(timeIntervalSince1970: 20))
        #expect(
            twice.headers?[WarrenHeader.originalPublishedAt] == .int64(1_000),
            "a second replay keeps the first publish time")
    }

    @Test func foreignOrMalformedHeadersReadAsUnknownNeverAsACrash() {
        let letter = DeadLetter(
            body: [],
            properties: AMQPProperties(headers: [
                WarrenHeader.reason: "from-the-future", WarrenHeader.attempts: "three",
                WarrenHeader.lastFailureAt: .array([]),
            ]))
        #expect(letter.reason?.kind == DeadLetterReason.Kind(rawValue: "from-the-future"))
        #expect(letter.attempts == nil && letter.lastFailedAt == nil)
        #expect(DeadLetter(body: [], properties: AMQPProperties()).reason == nil)
        #expect(letter.replayQueue(fallback: "emails") == "emails")
    }
}
