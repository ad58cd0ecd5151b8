import Foundation
import Testing
import WarrenAMQP
import WarrenLocalBroker
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

extension HTTPHealthBrokerTests {
    // On the health suite's node, never at the same time as the recovery suite's outages.
    @Suite(
        "Worker health against RabbitMQ (dedicated broker)", .serialized, .tags(.broker), .needs(.broker),
        .deletesItsQueues)
    struct WorkerHealthBrokerTests {
        @Test func aQueueDeletedUnderTheWorkerIsNamedUntilTheWorkerDeclaredItAgain() async throws {
            let broker = try await bootingOneAtATime { try await LocalBroker.shared(HTTPHealthBrokerTests.brokerName) }
            let queue = TestBroker.uniqueName()
            let other = TestBroker.uniqueName()
            let registrations = [queue, other].map { HandlerRegistration(WelcomeEmail.self, queue: $0) { _, _ in } }
            let worker = Worker(
                transport: RabbitMQTransport(
                    endpoints: [try AMQPEndpoint(uri: broker.amqpURL)], logger: TestBroker.quietLogger()),
                registrations: registrations,
                configuration: WorkerConfiguration(
                    recovery: RecoveryPolicy(initialDelay: .seconds(1), maximumDelay: .seconds(1))),
                logger: TestBroker.quietLogger())
            let running = Task { try await worker.run() }
            try await worker.waitUntilConsuming()

            let connection = try await AMQPConnection.connect(
                to: AMQPEndpoint(uri: broker.amqpURL), logger: TestBroker.logger)
            _ = try await connection.openChannel().queueDelete(queue)
            #expect(
                try await eventually(timeout: .seconds(5)) {
                    worker.health.queues.first { $0.queue == queue }?.state == .cancelled
                }, "the deleted queue is named: \(worker.health)")
            #expect(!worker.health.isReady)
            #expect(worker.health.queues.first { $0.queue == queue }?.lastError?.contains("cancelled") == true)
            try await worker.waitUntilConsuming(timeout: .seconds(30))
            #expect(worker.health.isReady, "ready again once the worker declared the queue again")
            #expect(try await connection.openChannel().queueStatus(queue).consumerCount == 1)

            worker.shutdown()
            try await running.value
            for name in [queue, other] {
                let topology = WarrenTopology(queue: name)
                for doomed in [name, topology.deadLetterQueue, topology.redeliveredQueue, topology.manifestQueue] {
                    _ = try? await connection.openChannel().queueDelete(doomed)
                }
            }
            await connection.close()
        }
    }
}
