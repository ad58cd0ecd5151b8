import Testing
import WarrenTestSupport
import WarrenTesting

@_spi(WarrenTransport) @testable import Warren

@Suite("Worker health: readiness follows consumption")
struct WorkerHealthTests {
    func states(_ tracker: HealthTracker) -> [String: WorkerHealth.QueueHealth.State] {
        Dictionary(uniqueKeysWithValues: tracker.snapshot.queues.map { ($0.queue, $0.state) })
    }

    @Test func aWorkerIsReadyOnlyWhileEveryEnabledQueueConsumes() {
        var tracker = HealthTracker(enabled: ["emails", "invoices"], disabled: ["reports"])
        #expect(states(tracker) == ["emails": .recovering, "invoices": .recovering, "reports": .disabled])
        #expect(!tracker.snapshot.isReady, "not before it consumes")
        tracker.consuming()
        #expect(tracker.snapshot.isReady, "a disabled queue is not needed")
        tracker.failed(queue: "emails", error: "the broker cancelled consumer (queue deleted)", cancelledByBroker: true)
        #expect(states(tracker) == ["emails": .cancelled, "invoices": .recovering, "reports": .disabled])
        #expect(
            tracker.snapshot.queues.first?.lastError?.contains("queue deleted") == true, "it names the queue's problem")
        #expect(!tracker.snapshot.isReady)
        tracker.failed(queue: nil, error: "cannot connect", cancelledByBroker: false)
        #expect(
            tracker.snapshot.queues.filter { $0.state != .disabled }.allSatisfy {
                $0.state == .recovering && $0.lastError == "cannot connect"
            })
        tracker.consuming()
        #expect(tracker.snapshot.isReady && tracker.snapshot.queues.allSatisfy { $0.lastError == nil })
    }

    @Test func aStoppedWorkerIsNeverReadyAgainAndItsStopIsNoFailure() {
        var tracker = HealthTracker(enabled: ["emails"], disabled: [])
        tracker.consuming()
        tracker.stop(reason: "the worker is shutting down")
        tracker.failed(queue: "emails", error: "consumer cancelled by the stop", cancelledByBroker: false)
        tracker.consuming()
        #expect(states(tracker) == ["emails": .cancelled])
        #expect(tracker.snapshot.queues.first?.lastError == "the worker is shutting down")
        #expect(!tracker.snapshot.isReady && tracker.stopped)
        #expect(!HealthTracker(enabled: [], disabled: ["reports"]).snapshot.isReady, "nothing to consume is not ready")
    }

    @Test func theHealthOfARunningWorker() async throws {
        let emails = HandlerRegistration(WelcomeEmail.self, queue: "emails") { _, _ in }
        let reports = HandlerRegistration(WelcomeEmail.self, queue: "reports", options: HandlerOptions(enabled: false))
        { _, _ in }
        let harness = try await WarrenTestHarness(registrations: [emails, reports])
        #expect(harness.worker.health.queues.map(\.state) == [.consuming, .disabled])
        #expect(harness.worker.health.isReady && harness.worker.isConsuming)
        await harness.stop()
        #expect(harness.worker.health.queues.map(\.state) == [.cancelled, .disabled])
        #expect(!harness.worker.isConsuming)
    }
}
