import Foundation
import Testing
@_spi(WarrenTransport) import Warren
import WarrenAMQP
import WarrenTestSupport

@testable import WarrenLedger

/// What anyone who may publish to `warren.events`, or to a dead-letter queue, can do to a ledger's store: bounded.
@Suite("The ledger's bounds")
struct LedgerBoundsTests: LedgerBoundsFixture {
    @Test func fieldsAreCutAndNULsReplacedWithoutSplittingACharacter() {
        var cut = false
        var hostile = event(.deadLetter, "m", at: now, error: String(repeating: "é", count: 10_000) + "\u{0}")
        hostile.type = String(repeating: "t", count: 300)
        hostile.headers = Dictionary(
            uniqueKeysWithValues: (0..<100).map { ("h\($0)", String(repeating: "v", count: 5_000)) })
        hostile.body = String(repeating: "b", count: 300_000)
        let bounded = try! #require(LedgerBounds.bounded(hostile, cut: &cut))
        #expect(cut)
        #expect(bounded.error?.utf8.count ?? 0 <= LedgerBounds.errorBytes && bounded.error?.hasPrefix("éé") == true)
        #expect(bounded.error?.unicodeScalars.allSatisfy { $0 == "é" } == true, "cut between characters")
        #expect(bounded.type?.utf8.count == LedgerBounds.nameBytes)
        #expect(
            bounded.headers?.count == LedgerBounds.headerCount
                && bounded.headers?.values.allSatisfy { $0.utf8.count <= LedgerBounds.headerValueBytes } == true)
        #expect(bounded.body?.utf8.count == LedgerBounds.bodyBytes && bounded.bodyTruncated == true)
        var nul = event(.ack, "n", at: now, error: "a\u{0}b")
        nul.host = "\u{0}"
        #expect(LedgerBounds.bounded(nul, cut: &cut)?.error == "a\u{FFFD}b")
        #expect(
            LedgerBounds.bounded(event(.ack, String(repeating: "i", count: 256), at: now), cut: &cut) == nil,
            "no AMQP message has this id")
        #expect(LedgerBounds.bounded(event(.ack, "a\u{0}", at: now), cut: &cut) == nil)
        var base64 = event(.deadLetter, "b", at: now)
        base64.bodyEncoding = "base64\u{0}" + String(repeating: "x", count: 100)
        base64.body = String(repeating: "e\u{301}", count: 200_000) + "\u{0}"  // one character, three bytes each
        let cleaned = try! #require(LedgerBounds.bounded(base64, cut: &cut))
        #expect(cleaned.bodyEncoding?.utf8.count ?? 0 <= 16 && cleaned.bodyEncoding?.utf8.contains(0) == false)
        #expect(
            cleaned.body?.utf8.count ?? 0 <= LedgerBounds.bodyBytes && cleaned.body?.utf8.contains(0) == false
                && cleaned.bodyTruncated == true)
        var fine = false
        #expect(
            LedgerBounds.bounded(event(.ack, "ok", at: now, error: "short"), cut: &fine)
                == event(.ack, "ok", at: now, error: "short") && !fine)
    }

    @Test func aBatchOfMoreThanAThousandEventsIsRefusedBeforeItsEventsAreBuilt() throws {
        func batch(_ count: Int) -> Data {
            Data(
                ("["
                    + Array(
                        repeating: #"{"schema":1,"event":"ack","message_id":"m","queue":"q","at_ms":1}"#, count: count
                    ).joined(separator: ",") + "]").utf8)
        }
        #expect(try JSONDecoder().decode(EventBatch.self, from: batch(1_000)).events.count == 1_000)
        #expect {
            try JSONDecoder().decode(EventBatch.self, from: batch(1_001))
        } throws: { "\($0)".contains("at most 1000 events") }
    }

    @Test func hostileTimesInACopyNeitherTrapNorKeyIt() throws {
        for value in [Int64.max, Int64.min, -1, 253_402_300_800_000] {
            let message = StoredMessage(
                body: [],
                properties: AMQPProperties(
                    headers: [WarrenHeader.lastFailureAt: .int64(value)], messageID: "m",
                    timestamp: Date(timeIntervalSince1970: 1.8e19)))
            let letter = IngestedDeadLetter(message: message, queue: "q", receivedAtMs: now)
            #expect(letter.event.atMs == now && letter.keyedByReceipt, "\(value)")
            _ = try message.encodedProperties()
        }
        let deaths: AMQPTable = ["x-death": [["time": .timestamp(UInt64.max)], ["time": .timestamp(1_000)], "garbage"]]
        #expect(IngestedDeadLetter.death(deaths)?.atMs == 1_000_000)
        #expect(
            UnixMilliseconds.from(Date(timeIntervalSince1970: .nan)) == nil && UnixMilliseconds.from(Int64.min) == nil)
    }

    @Test func anEmptyAMQPTypeFallsBackToWarrensHeaderEverywhere() {
        let properties = AMQPProperties(headers: [WarrenHeader.messageType: "email.welcome"], type: "")
        #expect(properties.warrenMessageType == "email.welcome")
        #expect(DeadLetter(body: [], properties: properties).messageType == "email.welcome")
        #expect(AMQPProperties(type: "").warrenMessageType == nil)
        #expect(AMQPProperties(headers: [WarrenHeader.messageType: "h"], type: "t").warrenMessageType == "t")
    }
}
