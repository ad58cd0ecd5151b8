import Foundation
import Synchronization
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport
import WarrenTesting

/// Warren's core promise under injected faults: no delivery is settled before its retry or dead-letter copy is
/// confirmed, and a copy that is not confirmed leaves the original unacked and back in its queue — nothing lost.
/// Each test asserts the exact order of the worker's publishes, confirms, acks and requeues for one message
/// (``FaultInjectingTransport/steps(of:)``), so acking first, or acking when the copy failed, fails it.
@Suite("Settlement order under injected faults (WarrenTesting)")
struct SettlementOrderTests {
    typealias Step = FaultInjectingTransport.Step

    /// One handler at a time (so a message's steps are not interleaved with its own copy's), two attempts.
    static func emails(redeliveryLimit: Int? = 10) -> HandlerRegistration {
        HandlerRegistration(
            WelcomeEmail.self, queue: "emails",
            options: HandlerOptions(
                maxConcurrentHandlers: 1, retry: RetryPolicy(maxAttempts: 2, backoff: .explicit([.seconds(1)])))
        ) { email, _ in
            switch email.email.split(separator: "@").last ?? "" {
            case "fail.example": throw Flaky()
            case "reject.example": throw Reject("mailbox does not exist")
            default: break
            }
        }
    }

    static func harness(redeliveryLimit: Int? = 10) async throws -> WarrenTestHarness {
        try await WarrenTestHarness(
            registrations: [emails()], configuration: WorkerConfiguration(redeliveryLimit: redeliveryLimit))
    }

    static let retry = FaultInjectingTransport.Target.retry(queue: "emails")
    static let deadLetters = FaultInjectingTransport.Target.deadLetters(queue: "emails")
    static let queue = FaultInjectingTransport.Target.queue("emails")

    @Test func aRetryCopyIsConfirmedBeforeItsOriginalIsAcked() async throws {
        let harness = try await Self.harness()
        let settled = try await harness.send(
            WelcomeEmail(userId: "1", email: "a@fail.example"), to: "emails", messageID: "m")
        #expect(settled.outcome == .retried(delay: .seconds(1), nextAttempt: 2))
        #expect(
            harness.faults.steps(of: "m") == [
                .publishSent(messageID: "m", to: Self.retry), .publishConfirmed(messageID: "m", to: Self.retry),
                .acked(messageID: "m"),
            ])
        #expect(harness.transport.delayedCount == 1 && harness.transport.depth(of: "emails") == (0, 0))
        await harness.stop()
    }

    @Test func aDeadLetterCopyIsConfirmedBeforeItsOriginalIsAcked() async throws {
        let harness = try await Self.harness()
        let settled = try await harness.send(
            WelcomeEmail(userId: "1", email: "a@reject.example"), to: "emails", messageID: "m")
        #expect(settled.outcome.name == "dead-letter")
        #expect(
            harness.faults.steps(of: "m") == [
                .publishSent(messageID: "m", to: Self.deadLetters),
                .publishConfirmed(messageID: "m", to: Self.deadLetters), .acked(messageID: "m"),
            ])
        #expect(harness.deadLetters(of: "emails").map(\.messageID) == ["m"])
        await harness.stop()
    }

    /// The broker refuses the copy: the original is requeued, never acked; it comes back (redelivered, so re-enqueued
    /// with its count first), fails again, and this time its copy is kept.
    @Test(arguments: [FaultInjectingTransport.Selector.retries, .deadLetters])
    func aRefusedCopyLeavesTheOriginalUnackedAndBackInItsQueue(_ refused: FaultInjectingTransport.Selector) async throws
    {
        let harness = try await Self.harness()
        harness.faults.failPublishes(to: refused)
        let email = refused == .retries ? "a@fail.example" : "a@reject.example"
        let target = refused == .retries ? Self.retry : Self.deadLetters
        let first = try await harness.send(WelcomeEmail(userId: "1", email: email), to: "emails", messageID: "m")
        #expect(first.outcome == .requeued)
        try await waitForSteps(harness, of: "m", count: 9)
        let steps = harness.faults.steps(of: "m")
        #expect(
            Array(steps.prefix(3)) == [
                .publishSent(messageID: "m", to: target), .publishFailed(messageID: "m", to: target),
                .requeued(messageID: "m"),
            ])
        // Redelivered: re-enqueued with its count (confirmed, then the original acked), then handled again.
        #expect(
            Array(steps.dropFirst(3).prefix(3)) == [
                .publishSent(messageID: "m", to: Self.queue), .publishConfirmed(messageID: "m", to: Self.queue),
                .acked(messageID: "m"),
            ])
        #expect(
            Array(steps.dropFirst(6)) == [
                .publishSent(messageID: "m", to: target), .publishConfirmed(messageID: "m", to: target),
                .acked(messageID: "m"),
            ], "\(steps)")
        #expect(!steps.prefix(3).contains(.acked(messageID: "m")), "never acked while its copy was refused")
        if refused == .retries {
            #expect(harness.transport.delayedCount == 1)
        } else {
            #expect(harness.deadLetters(of: "emails").map(\.messageID) == ["m"])
        }
        await harness.stop()
    }

    /// While the copy's confirm is withheld the original stays unacked; a negative confirm requeues it; a positive
    /// one, later, lets it be acked.
    @Test func aWithheldConfirmHoldsTheAckAndANegativeOneRequeuesTheOriginal() async throws {
        let harness = try await Self.harness()
        harness.faults.withholdConfirms(to: .retries, times: 2)
        try await harness.transport.publish(
            try JSONMessageCodec().encode(WelcomeEmail(userId: "1", email: "a@fail.example")), to: .queue("emails"),
            properties: AMQPProperties(contentType: "application/json", messageID: "m", type: WelcomeEmail.messageType))
        try await harness.faults.waitForStep { $0 == .publishSent(messageID: "m", to: Self.retry) }
        #expect(harness.faults.steps(of: "m") == [.publishSent(messageID: "m", to: Self.retry)])
        #expect(
            harness.transport.depth(of: "emails").unacked == 1, "the original waits, unacked, for its copy's confirm")
        harness.faults.releaseConfirms(positive: false)
        #expect(try await harness.nextSettlement().outcome == .requeued)

        // Back, re-enqueued with its count, handled again; this copy's confirm is withheld too, then comes.
        try await waitForSteps(harness, of: "m", count: 7)
        #expect(harness.faults.steps(of: "m").last == .publishSent(messageID: "m", to: Self.retry))
        #expect(!harness.faults.steps(of: "m").dropFirst(6).contains(.acked(messageID: "m")))
        harness.faults.releaseConfirms(positive: true)
        _ = try await harness.nextSettlement()  // the re-enqueue
        #expect(try await harness.nextSettlement().outcome == .retried(delay: .seconds(1), nextAttempt: 2))
        #expect(
            harness.faults.steps(of: "m") == [
                .publishSent(messageID: "m", to: Self.retry), .publishFailed(messageID: "m", to: Self.retry),
                .requeued(messageID: "m"),
                .publishSent(messageID: "m", to: Self.queue), .publishConfirmed(messageID: "m", to: Self.queue),
                .acked(messageID: "m"),
                .publishSent(messageID: "m", to: Self.retry), .publishConfirmed(messageID: "m", to: Self.retry),
                .acked(messageID: "m"),
            ])
        #expect(harness.transport.delayedCount == 1)
        await harness.stop()
    }

    /// The connection is lost between the copy's confirm and the original's ack: the copy is kept and the original
    /// comes back — a duplicate, which at-least-once allows; nothing is lost.
    @Test func anAckLostAfterTheCopyWasConfirmedLosesNothing() async throws {
        let harness = try await Self.harness()
        harness.faults.failAcks()
        let first = try await harness.send(
            WelcomeEmail(userId: "1", email: "a@fail.example"), to: "emails", messageID: "m")
        #expect(first.outcome == .retried(delay: .seconds(1), nextAttempt: 2))
        try await waitForSteps(harness, of: "m", count: 9)
        #expect(
            harness.faults.steps(of: "m") == [
                .publishSent(messageID: "m", to: Self.retry), .publishConfirmed(messageID: "m", to: Self.retry),
                .ackFailed(messageID: "m"),
                .publishSent(messageID: "m", to: Self.queue), .publishConfirmed(messageID: "m", to: Self.queue),
                .acked(messageID: "m"),
                .publishSent(messageID: "m", to: Self.retry), .publishConfirmed(messageID: "m", to: Self.retry),
                .acked(messageID: "m"),
            ])
        #expect(harness.transport.delayedCount == 2, "both retry copies are kept")
        await harness.stop()
    }

    /// A redelivered message is re-enqueued with its return count, confirmed, before the redelivery is acked; when
    /// that counted copy is not confirmed, the redelivery is requeued, not acked.
    @Test func aRedeliveryIsAckedOnlyOnceItsCountedCopyIsConfirmed() async throws {
        let harness = try await Self.harness()
        harness.faults.failAcks()
        harness.faults.failPublishes(to: .queues)
        _ = try await harness.send(WelcomeEmail(userId: "1", email: "a@example.com"), to: "emails", messageID: "m")
        try await waitForSteps(harness, of: "m", count: 8)
        #expect(
            harness.faults.steps(of: "m") == [
                .ackFailed(messageID: "m"),
                .publishSent(messageID: "m", to: Self.queue), .publishFailed(messageID: "m", to: Self.queue),
                .requeued(messageID: "m"),
                .publishSent(messageID: "m", to: Self.queue), .publishConfirmed(messageID: "m", to: Self.queue),
                .acked(messageID: "m"),
                .acked(messageID: "m"),
            ])
        #expect(harness.transport.depth(of: "emails") == (0, 0), "handled once, nothing left behind")
        await harness.stop()
    }

    /// At the redelivery limit the message goes to the dead letters (reason `redelivery-limit`); when that copy is
    /// refused, the redelivery is requeued, and dead-lettered the next time.
    @Test func aDeadLetterCopyAtTheRedeliveryLimitThatIsRefusedLeavesTheRedeliveryUnacked() async throws {
        let harness = try await Self.harness(redeliveryLimit: 1)
        harness.faults.failAcks()
        harness.faults.failPublishes(to: .deadLetters)
        _ = try await harness.send(
            WelcomeEmail(userId: "1", email: "a@example.com"), to: "emails", messageID: "m",
            headers: [WarrenHeader.redeliveries: .int64(1)])
        try await waitForSteps(harness, of: "m", count: 7)
        #expect(
            harness.faults.steps(of: "m") == [
                .ackFailed(messageID: "m"),
                .publishSent(messageID: "m", to: Self.deadLetters),
                .publishFailed(messageID: "m", to: Self.deadLetters), .requeued(messageID: "m"),
                .publishSent(messageID: "m", to: Self.deadLetters),
                .publishConfirmed(messageID: "m", to: Self.deadLetters), .acked(messageID: "m"),
            ])
        #expect(harness.deadLetters(of: "emails").map { $0.reason?.kind } == [.redeliveryLimit])
        await harness.stop()
    }

    /// A handler interrupted by the shutdown (past the grace period) spends no attempt: the message is requeued as it
    /// came (no retry copy, no attempt header written), and the next worker handles it as attempt 1. The requeue does
    /// count as one return toward the redelivery limit (the broker marks it redelivered, as after a crash, and Warren
    /// cannot tell the two apart): the next worker re-enqueues it with `x-warren-redeliveries: 1` first.
    @Test func anInterruptedHandlerSpendsNoAttempt() async throws {
        let started = Release()
        let calls = Mutex<[Int]>([])
        let returns = Mutex<[Int64?]>([])
        let hanging = HandlerRegistration(
            WelcomeEmail.self, queue: "emails",
            options: HandlerOptions(retry: RetryPolicy(maxAttempts: 2, backoff: .explicit([.seconds(1)])))
        ) { _, context in
            calls.withLock { $0.append(context.attempt) }
            returns.withLock { $0.append(context.headers[WarrenHeader.redeliveries]?.int64Value) }
            if context.attempt == 1 && calls.withLock({ $0.count }) == 1 {
                started.open()
                try await Task.sleep(for: .seconds(60))
            }
        }
        var configuration = WorkerConfiguration()
        configuration.gracePeriod = .milliseconds(100)
        let harness = try await WarrenTestHarness(registrations: [hanging], configuration: configuration)
        try await harness.transport.publish(
            try JSONMessageCodec().encode(WelcomeEmail(userId: "1", email: "a@example.com")), to: .queue("emails"),
            properties: AMQPProperties(contentType: "application/json", messageID: "m", type: WelcomeEmail.messageType))
        await started.wait()
        await harness.stop()
        #expect(harness.unreadSettlements.map(\.outcome) == [.requeued])
        #expect(
            harness.faults.steps(of: "m") == [.requeued(messageID: "m")],
            "no copy published: nothing counted as a failure")
        let waiting = harness.transport.peek("emails")
        #expect(waiting.count == 1 && waiting.first?.redelivered == true)
        #expect(waiting.first?.properties.headers?[WarrenHeader.attempt] == nil, "no attempt written")

        // The next worker on the same queue handles it as attempt 1.
        let next = Worker(transport: harness.transport, registrations: [hanging], logger: TestBroker.quietLogger())
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await next.run() }
            #expect(try await eventually { calls.withLock { $0.count } == 2 })
            next.shutdown()
            try await group.waitForAll()
        }
        #expect(calls.withLock { $0 } == [1, 1])
        #expect(returns.withLock { $0 } == [nil, 1], "counted as one return toward the redelivery limit")
    }

    private func waitForSteps(_ harness: WarrenTestHarness, of id: String, count: Int) async throws {
        let reached = try await eventually(timeout: .seconds(10)) { harness.faults.steps(of: id).count >= count }
        if !reached { throw TestFailure("\(count) steps of \(id) expected; \(harness.faults.steps(of: id))") }
    }
}
