import Foundation
import Testing
import WarrenAMQP

@testable import Warren

@Suite("Retry policy and failure decisions")
struct RetryDecisionTests {
    struct Flaky: Error {}

    @Test func explicitDelaysRepeatTheLastOne() {
        let policy = RetryPolicy(maxAttempts: 6, backoff: .explicit([.seconds(1), .seconds(2), .seconds(4)]))
        #expect(
            (1...5).map { policy.delay(afterAttempt: $0) } == [
                .seconds(1), .seconds(2), .seconds(4), .seconds(4), .seconds(4),
            ])
    }

    @Test func exponentialBackoffIsCappedAndInWholeMilliseconds() {
        let policy = RetryPolicy(
            maxAttempts: 10, backoff: .exponential(initial: .milliseconds(250), multiplier: 3, maximum: .seconds(5)))
        #expect(policy.delay(afterAttempt: 1) == .milliseconds(250))
        #expect(policy.delay(afterAttempt: 2) == .milliseconds(750))
        #expect(policy.delay(afterAttempt: 3) == .milliseconds(2250))
        #expect(policy.delay(afterAttempt: 4) == .seconds(5))
    }

    @Test func jitterIsQuantizedSoDelayQueuesStayFew() {
        let policy = RetryPolicy(maxAttempts: 3, backoff: .exponential(initial: .seconds(10), jitter: 0.2))
        var seen = Set<Duration>()
        for sample in stride(from: 0.0, to: 1.0, by: 0.001) {
            seen.insert(policy.delay(afterAttempt: 1, jitterSample: sample))
        }
        #expect(seen.count == RetryPolicy.Backoff.jitterSteps + 1)
        #expect(seen.min() == .seconds(8))
        #expect(seen.max() == .seconds(12))
        let declared = policy.possibleDelays
        let everyPossibleDelay = Set(
            stride(from: 0.0, to: 1.0, by: 0.001).flatMap { sample in
                [1, 2].map { policy.delay(afterAttempt: $0, jitterSample: sample) }
            })
        #expect(declared == everyPossibleDelay, "a delay queue is declared for every delay the policy can produce")
        #expect(RetryPolicy.never.possibleDelays.isEmpty)
    }

    @Test func transientFailuresRetryUntilTheLastAttempt() {
        let policy = RetryPolicy(maxAttempts: 3, backoff: .explicit([.seconds(1), .seconds(2)]))
        #expect(
            FailureDecision.decide(failure: .handlerError(Flaky()), attempt: 1, policy: policy)
                == .retry(delay: .seconds(1), nextAttempt: 2))
        #expect(
            FailureDecision.decide(failure: .timedOut(.seconds(5)), attempt: 2, policy: policy)
                == .retry(delay: .seconds(2), nextAttempt: 3))
        guard
            case .deadLetter(let reason) = FailureDecision.decide(
                failure: .handlerError(Flaky()), attempt: 3, policy: policy)
        else {
            Issue.record("the last attempt goes to the dead letters")
            return
        }
        #expect(reason.kind == .retriesExhausted)
        #expect(
            reason.detail == HandlingFailure.handlerError(Flaky()).summary,
            "the last failure's text, as the log and the events say it")
    }

    @Test func permanentFailuresGoStraightToTheDeadLetters() {
        let policy = RetryPolicy.default
        let cases: [(HandlingFailure, DeadLetterReason.Kind)] = [
            (.handlerError(Reject("bounced")), .rejected),
            (.handlerError(DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "x"))), .permanentError),
            (.undecodable("bad json"), .undecodable),
            (.unknownType("nope"), .unknownType),
            (.unknownType(nil), .unknownType),
            (.unsupportedContentType("text/xml"), .unsupportedContentType),
            (.tooLarge(bytes: 10, limit: 5), .tooLarge),
        ]
        for (failure, kind) in cases {
            guard case .deadLetter(let reason) = FailureDecision.decide(failure: failure, attempt: 1, policy: policy)
            else {
                Issue.record("\(failure.summary) must not be retried")
                continue
            }
            #expect(reason.kind == kind)
            #expect(reason.detail == failure.summary, "one text per failure")
        }
    }

    @Test func aPolicyPredicateCanMakeErrorsPermanent() {
        struct Fatal: Error {}
        let policy = RetryPolicy(maxAttempts: 5, backoff: .explicit([.seconds(1)]), isPermanent: { $0 is Fatal })
        #expect(
            FailureDecision.decide(failure: .handlerError(Fatal()), attempt: 1, policy: policy)
                == .deadLetter(DeadLetterReason(kind: .permanentError, detail: "Fatal: Fatal()")))
        #expect(
            FailureDecision.decide(failure: .handlerError(Flaky()), attempt: 1, policy: policy)
                == .retry(delay: .seconds(1), nextAttempt: 2))
    }

    @Test func aHandlerMayAskForItsOwnDelay() {
        let policy = RetryPolicy(maxAttempts: 3, backoff: .explicit([.seconds(1)]))
        #expect(
            FailureDecision.decide(failure: .handlerError(RetryAfter(.seconds(42))), attempt: 1, policy: policy)
                == .retry(delay: .seconds(42), nextAttempt: 2))
        guard
            case .deadLetter = FailureDecision.decide(
                failure: .handlerError(RetryAfter(.seconds(42))), attempt: 3, policy: policy)
        else {
            Issue.record("RetryAfter is still bounded by maxAttempts")
            return
        }
    }

    @Test func headerLookupAgreesWithTheSubscript() {
        for size in [0, 1, 2, 8, 9, 30] {
            var headers: AMQPTable = [:]
            for index in 0..<size { headers["x-warren-\(index)"] = .int64(Int64(index)) }
            for index in 0..<(size + 2) { #expect(headers.header("x-warren-\(index)") == headers["x-warren-\(index)"]) }
            #expect(headers.header("") == nil)
        }
    }

    @Test func theTopologyManifestIsStoredWithSnakeCaseKeysAndOlderCamelCaseOnesStillRead() throws {
        let manifest = TopologyManifest(
            queue: "emails", queueType: "classic", deadLetterExchange: WarrenTopology.deadLetterExchange,
            deadLetterQueue: "emails.dead-letters",
            delayQueues: [.init(name: "emails.retry.1000ms", delayMilliseconds: 1000)],
            updatedAt: Date(timeIntervalSince1970: 1_700_000_000))
        let stored = String(decoding: try manifest.json(), as: UTF8.self)
        #expect(
            stored.contains(#""delay_milliseconds":1000"#) && stored.contains(#""dead_letter_queue""#)
                && !stored.contains("queueType"))
        #expect(try TopologyManifest(json: manifest.json()) == manifest)
        let older =
            #"{"queue":"emails","queueType":"classic","deadLetterExchange":"warren.dead-letters","deadLetterQueue":"emails.dead-letters","delayQueues":[{"name":"emails.retry.1000ms","delayMilliseconds":1000}],"updatedAt":"2023-11-14T22:13:20Z"}"#
        #expect(try TopologyManifest(json: Data(older.utf8)) == manifest)
    }

    @Test func topologyNames() {
        let topology = WarrenTopology(queue: "emails")
        #expect(topology.delayQueue(for: .seconds(2)) == "emails.retry.2000ms")
        #expect(topology.deadLetterQueue == "emails.dead-letters")
        #expect(topology.delayQueueArguments(for: .milliseconds(1500))["x-message-ttl"] == .int64(1500))
        #expect(topology.delayQueueArguments(for: .seconds(1))["x-dead-letter-routing-key"] == .string("emails"))
    }
}

struct Ping: WarrenMessage {
    static var messageType: String { "test.ping" }
    var n: Int
}
