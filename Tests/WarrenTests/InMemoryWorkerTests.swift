import Foundation
import Synchronization
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport
import WarrenTesting

@Suite("Worker on the in-memory transport (WarrenTesting)")
struct InMemoryWorkerTests {
    let recorder = Recorder()
    /// Where handlers of `slow.example` wait: until it is true, or until they are cancelled.
    let slowGate = AwaitableState(false)

    func emails(
        retry: RetryPolicy = RetryPolicy(maxAttempts: 4, backoff: .explicit([.seconds(1), .seconds(2), .seconds(4)])),
        timeout: Duration? = .seconds(5), concurrency: Int = 4
    ) -> HandlerRegistration {
        HandlerRegistration(
            WelcomeEmail.self, queue: "emails",
            options: HandlerOptions(maxConcurrentHandlers: concurrency, retry: retry, timeout: timeout)
        ) { [recorder, slowGate] email, context in
            recorder.record(email, context)
            switch email.email.split(separator: "@").last ?? "" {
            case "flaky.example": if context.attempt < 3 { throw Flaky() }
            case "bounce.example": throw Reject("mailbox does not exist")
            case "broken.example": throw Flaky()
            case "later.example": if context.attempt == 1 { throw RetryAfter(.seconds(30)) }
            case "slow.example": try await slowGate.wait { $0 }
            case "hang.example": try await Task.sleep(for: .seconds(60))
            default: break
            }
        }
    }

    @Test func successIsAcked() async throws {
        let harness = try await WarrenTestHarness(registrations: [emails()])
        let event = try await harness.send(
            WelcomeEmail(userId: "1", email: "ok@example.com"), to: "emails", messageID: "m-1")
        #expect(event.outcome == .acked)
        #expect(event.attempt == 1)
        #expect(event.messageID == "m-1")
        #expect(event.messageType == "email.welcome")
        #expect(harness.transport.depth(of: "emails") == (0, 0))
        await harness.stop()
    }

    @Test func aQueueWaitIsMeasuredOnlyFromWarrensMillisecondTimes() async throws {
        let harness = try await WarrenTestHarness(registrations: [emails()])
        let warren = try await harness.send(WelcomeEmail(userId: "w", email: "w@example.com"), to: "emails")
        #expect(warren.queueWait != nil, "published with Warren's header")
        let foreign = try await harness.sendRaw(
            Array(#"{"userId":"f","email":"f@example.com"}"#.utf8),
            properties: AMQPProperties(
                contentType: "application/json", messageID: "foreign", timestamp: Date(), type: WelcomeEmail.messageType
            ),
            to: "emails")
        #expect(
            foreign.outcome == .acked && foreign.queueWait == nil, "the AMQP timestamp's whole seconds are not a wait")
        await harness.stop()
    }

    @Test func aFailureReadsTheSameInItsEventAndItsDeadLetter() async throws {
        let harness = try await WarrenTestHarness(registrations: [
            emails(retry: RetryPolicy(maxAttempts: 2, backoff: .explicit([.seconds(1)])))
        ])
        let rejected = try await harness.send(
            WelcomeEmail(userId: "r", email: "x@bounce.example"), to: "emails", messageID: "rejected")
        _ = try await harness.send(
            WelcomeEmail(userId: "b", email: "x@broken.example"), to: "emails", messageID: "broken")
        let exhausted = try await harness.advance(by: .seconds(1))
        let letters = Dictionary(
            uniqueKeysWithValues: harness.deadLetters(of: "emails").map { ($0.messageID ?? "", $0) })
        #expect(
            rejected.error == "Reject: mailbox does not exist" && letters["rejected"]?.reason?.detail == rejected.error)
        #expect(
            letters["broken"]?.reason?.kind == .retriesExhausted
                && letters["broken"]?.reason?.detail == exhausted.error, "\(String(describing: exhausted.error))")
        #expect(letters["broken"]?.attempts == 2)
        await harness.stop()
    }

    @Test func retriesWaitOnTheClockAndCarryTheAttempt() async throws {
        let harness = try await WarrenTestHarness(registrations: [emails()])
        let first = try await harness.send(WelcomeEmail(userId: "2", email: "a@flaky.example"), to: "emails")
        #expect(first.outcome == .retried(delay: .seconds(1), nextAttempt: 2))
        #expect(first.error?.contains("mail server busy") == true)
        #expect(harness.transport.delayedCount == 1)

        // Not yet: 999 ms is short of the delay. The retry waits on the manual clock, which resumes a sleeper only in
        // `advance`: as many sleepers after it as before means none woke, so nothing can have been redelivered.
        // (The delayed copy registers its sleeper from a task of its own: wait for it first.)
        #expect(try await eventually(pollEvery: .milliseconds(1)) { harness.clock.sleeperCount == 1 })
        harness.clock.advance(by: .milliseconds(999))
        #expect(harness.clock.sleeperCount == 1, "no sleeper was due")
        #expect(harness.unreadSettlements.isEmpty && harness.transport.delayedCount == 1)

        let second = try await harness.advance(by: .milliseconds(1))
        #expect(second.attempt == 2)
        #expect(second.outcome == .retried(delay: .seconds(2), nextAttempt: 3))
        let third = try await harness.advance(by: .seconds(2))
        #expect(third.attempt == 3)
        #expect(third.outcome == .acked)
        #expect(recorder.calls(for: "a@flaky.example").map(\.attempt) == [1, 2, 3])
        #expect(harness.deadLetters(of: "emails").isEmpty)
        await harness.stop()
    }

    @Test func theLastAttemptGoesToTheDeadLetters() async throws {
        let harness = try await WarrenTestHarness(registrations: [emails()])
        _ = try await harness.send(
            WelcomeEmail(userId: "3", email: "x@broken.example"), to: "emails", messageID: "doomed")
        _ = try await harness.advance(by: .seconds(1))
        _ = try await harness.advance(by: .seconds(2))
        let last = try await harness.advance(by: .seconds(4))
        #expect(last.attempt == 4)
        guard case .deadLettered(let reason) = last.outcome else {
            Issue.record("expected the dead letters, got \(last.outcome)")
            return
        }
        #expect(reason.kind == .retriesExhausted)
        let letter = try #require(harness.deadLetters(of: "emails").first)
        #expect(letter.messageID == "doomed")
        #expect(letter.attempts == 4)
        #expect(letter.reason?.kind == .retriesExhausted)
        #expect(letter.originalQueue == "emails")
        #expect(
            letter.properties.headers?[WarrenHeader.reason]?.stringValue == "retries-exhausted",
            "the header a foreign reader sees")
        await harness.stop()
    }

    @Test func permanentFailuresAndBadInputAreDeadLetteredAtOnceWithAReason() async throws {
        var configuration = WorkerConfiguration()
        configuration.maximumMessageBytes = 1024
        let harness = try await WarrenTestHarness(registrations: [emails()], configuration: configuration)
        func kind(_ event: SettlementEvent) -> DeadLetterReason.Kind? {
            if case .deadLettered(let reason) = event.outcome { return reason.kind }
            return nil
        }
        func props(type: String? = "email.welcome", contentType: String? = "application/json") -> AMQPProperties {
            AMQPProperties(contentType: contentType, messageID: UUID().uuidString, type: type)
        }
        #expect(
            kind(try await harness.send(WelcomeEmail(userId: "4", email: "b@bounce.example"), to: "emails"))
                == .rejected)
        #expect(
            kind(try await harness.sendRaw(Array(#"{"userId":"#.utf8), properties: props(), to: "emails"))
                == .undecodable)
        #expect(kind(try await harness.sendRaw([], properties: props(), to: "emails")) == .undecodable)
        #expect(kind(try await harness.sendRaw([0xFF, 0xFE, 0x00], properties: props(), to: "emails")) == .undecodable)
        #expect(
            kind(try await harness.sendRaw(Array("{}".utf8), properties: props(type: "sms.welcome"), to: "emails"))
                == .unknownType)
        #expect(
            kind(try await harness.sendRaw(Array("{}".utf8), properties: props(type: nil), to: "emails"))
                == .unknownType)
        #expect(
            kind(try await harness.sendRaw(Array("{}".utf8), properties: props(type: ""), to: "emails")) == .unknownType
        )
        #expect(
            kind(
                try await harness.sendRaw(Array("<a/>".utf8), properties: props(contentType: "text/xml"), to: "emails"))
                == .unsupportedContentType)
        #expect(
            kind(try await harness.sendRaw([UInt8](repeating: 0x20, count: 2048), properties: props(), to: "emails"))
                == .tooLarge)
        let deeplyNested = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(
            kind(try await harness.sendRaw(Array(deeplyNested.utf8), properties: props(), to: "emails")) == .tooLarge)
        #expect(harness.deadLetters(of: "emails").count == 10)
        #expect(recorder.calls(for: "b@bounce.example").count == 1, "a rejected message is not retried")
        await harness.stop()
    }

    @Test func aTimeoutIsATransientFailure() async throws {
        let harness = try await WarrenTestHarness(registrations: [emails(timeout: .milliseconds(100))])
        let event = try await harness.send(WelcomeEmail(userId: "5", email: "s@hang.example"), to: "emails")
        #expect(event.outcome == .retried(delay: .seconds(1), nextAttempt: 2))
        #expect(event.error?.contains("timed out") == true)
        await harness.stop()
    }

    @Test func aHandlerCanAskForItsOwnDelay() async throws {
        let harness = try await WarrenTestHarness(registrations: [emails()])
        let event = try await harness.send(WelcomeEmail(userId: "6", email: "l@later.example"), to: "emails")
        #expect(event.outcome == .retried(delay: .seconds(30), nextAttempt: 2))
        #expect(try await harness.advance(by: .seconds(30)).outcome == .acked)
        await harness.stop()
    }

    @Test func gracefulShutdownLetsRunningHandlersFinishAndRequeuesTheRest() async throws {
        let harness = try await WarrenTestHarness(registrations: [emails(concurrency: 1)])
        for n in 0..<3 {
            try await harness.transport.publish(
                try JSONMessageCodec().encode(WelcomeEmail(userId: "\(n)", email: "s\(n)@slow.example")),
                to: .queue("emails"),
                properties: AMQPProperties(
                    contentType: "application/json", messageID: "slow-\(n)", type: "email.welcome"))
        }
        #expect(
            try await eventually { !recorder.calls(for: "s0@slow.example").isEmpty },
            "the first handler is running; the rest wait")
        // The shutdown begins while the first handler runs; it finishes after that.
        harness.worker.shutdown()
        slowGate.update { $0 = true }
        await harness.stop()
        let settled = harness.unreadSettlements
        #expect(
            settled.first { $0.messageID == "slow-0" }?.outcome == .acked,
            "the running handler finished within the grace period")
        #expect(recorder.calls(for: "s1@slow.example").isEmpty && recorder.calls(for: "s2@slow.example").isEmpty)
        #expect(harness.transport.depth(of: "emails").ready == 2, "messages not started are back in the queue")
    }

    @Test func afterTheGracePeriodHandlersAreCancelledAndTheirMessagesRequeued() async throws {
        var configuration = WorkerConfiguration()
        configuration.gracePeriod = .milliseconds(200)
        let harness = try await WarrenTestHarness(registrations: [emails(timeout: nil)], configuration: configuration)
        try await harness.transport.publish(
            try JSONMessageCodec().encode(WelcomeEmail(userId: "7", email: "h@hang.example")), to: .queue("emails"),
            properties: AMQPProperties(contentType: "application/json", messageID: "hanging", type: "email.welcome"))
        #expect(try await eventually { !recorder.calls(for: "h@hang.example").isEmpty }, "the handler hangs")
        let clock = ContinuousClock()
        let started = clock.now
        await harness.stop()
        // The grace period is 200 ms and the handler would hang 60 s: 10 s leaves room for a starved machine.
        #expect(clock.now - started < .seconds(10))
        #expect(harness.unreadSettlements.first?.outcome == .requeued)
        #expect(harness.transport.depth(of: "emails").ready == 1, "the interrupted message is not lost")
        #expect(harness.deadLetters(of: "emails").isEmpty)
    }

    @Test func aHandlerTypeAndTheContextPublisherCarryTheCorrelationForward() async throws {
        struct Forwarded: WarrenMessage {
            static var messageType: String { "test.forwarded" }
            var email: String
        }
        struct Forwarder: MessageHandler {
            func handle(_ email: WelcomeEmail, context: MessageContext) async throws {
                try await context.publish(Forwarded(email: email.email), to: .queue("forwarded"))
            }
        }
        let harness = try await WarrenTestHarness(registrations: [HandlerRegistration(Forwarder(), queue: "emails")])
        let event = try await harness.send(
            WelcomeEmail(userId: "9", email: "f@example.com"), to: "emails", messageID: "origin")
        #expect(event.outcome == .acked)
        let forwarded = try #require(harness.transport.peek("forwarded").first)
        #expect(forwarded.properties.type == "test.forwarded")
        #expect(forwarded.properties.correlationID == "origin", "the correlation is carried forward")
        #expect(forwarded.properties.headers?[WarrenPublisher.causationHeader]?.stringValue == "origin")
        #expect(forwarded.properties.messageID != nil && forwarded.properties.timestamp != nil)
        await harness.stop()
    }

    @Test func anIdempotencyStoreSkipsADuplicateMessageID() async throws {
        let store = InMemoryIdempotencyStore(capacity: 100)
        let registration = HandlerRegistration(
            WelcomeEmail.self, queue: "emails", options: HandlerOptions(idempotency: store)
        ) { [recorder] email, context in
            recorder.record(email, context)
        }
        let harness = try await WarrenTestHarness(registrations: [registration])
        let first = try await harness.send(
            WelcomeEmail(userId: "1", email: "once@example.com"), to: "emails", messageID: "same-id")
        let second = try await harness.send(
            WelcomeEmail(userId: "1", email: "once@example.com"), to: "emails", messageID: "same-id")
        let other = try await harness.send(
            WelcomeEmail(userId: "1", email: "once@example.com"), to: "emails", messageID: "other-id")
        #expect(first.outcome == .acked && !first.duplicate)
        #expect(second.outcome == .acked && second.duplicate)
        #expect(other.outcome == .acked && !other.duplicate)
        #expect(recorder.calls(for: "once@example.com").count == 2)
        await harness.stop()
    }

    @Test func theInMemoryIdempotencyStoreForgetsTheOldestIDsBeyondItsCapacity() async throws {
        let store = InMemoryIdempotencyStore(capacity: 3)
        for n in 0..<5 { try await store.record("id-\(n)", scope: "q") }
        #expect(try await store.contains("id-0", scope: "q") == false)
        #expect(try await store.contains("id-1", scope: "q") == false)
        #expect(try await store.contains("id-4", scope: "q"))
        #expect(try await store.contains("id-4", scope: "other") == false, "scopes are separate")
        for n in 5..<50 { try await store.record("id-\(n)", scope: "q") }
        #expect(try await store.contains("id-49", scope: "q"))
        #expect(try await store.contains("id-46", scope: "q") == false)
    }

    @Test func oneHandlerAtATimeKeepsOrder() async throws {
        let order = Mutex<[Int]>([])
        struct Numbered: WarrenMessage {
            static var messageType: String { "test.numbered" }
            var n: Int
        }
        let registration = HandlerRegistration(
            Numbered.self, queue: "ordered", options: HandlerOptions(maxConcurrentHandlers: 1)
        ) { message, _ in
            try await Task.sleep(for: .milliseconds(Int.random(in: 0...5)))
            order.withLock { $0.append(message.n) }
        }
        let harness = try await WarrenTestHarness(registrations: [registration])
        for n in 0..<20 {
            try await harness.transport.publish(
                try JSONMessageCodec().encode(Numbered(n: n)), to: .queue("ordered"),
                properties: AMQPProperties(contentType: "application/json", type: Numbered.messageType))
        }
        for _ in 0..<20 { #expect(try await harness.nextSettlement().outcome == .acked) }
        #expect(order.withLock { $0 } == Array(0..<20))
        await harness.stop()
    }

    @Test func aBatchPublishedInMemoryIsHandledInOrder() async throws {
        let harness = try await WarrenTestHarness(registrations: [emails(concurrency: 1)])
        let publisher = WarrenPublisher(transport: harness.transport)
        let batch = (0..<5).map { WelcomeEmail(userId: "\($0)", email: "b\($0)@example.com") }
        let ids = try await publisher.publish(contentsOf: batch, to: .queue("emails")).map { try $0.get() }
        #expect(ids.count == 5)
        for _ in 0..<5 { #expect(try await harness.nextSettlement().outcome == .acked) }
        #expect((0..<5).map { recorder.calls(for: "b\($0)@example.com").count } == [1, 1, 1, 1, 1])
        await harness.stop()
    }
}
