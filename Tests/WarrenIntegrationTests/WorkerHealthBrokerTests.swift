import Foundation
import Testing
import WarrenAMQP
import WarrenLocalBroker
import WarrenTestSupport

@_spi(WarrenTransport) @testable import Warren

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
