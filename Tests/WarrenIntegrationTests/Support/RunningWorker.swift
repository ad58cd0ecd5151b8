import Foundation
@_spi(WarrenTransport) import Warren
import WarrenAMQP
import WarrenTestSupport

/// A worker on the shared test broker, running in a task of its own until `stop()`.
struct RunningWorker {
    let worker: Worker
    let task: Task<Void, any Error>
    let queue: String
    let url: String

    static func start(
        queue: String, registrations: [HandlerRegistration], configuration: WorkerConfiguration = WorkerConfiguration(),
        queueType: WarrenTopology.QueueType = .classic, observer: (@Sendable (SettlementEvent) -> Void)? = nil
    ) async throws -> RunningWorker {
        let url = try await TestBroker.url()
        let logger = TestBroker.quietLogger("warren.tests")
        let worker = Worker(
            transport: RabbitMQTransport(
                endpoints: [try AMQPEndpoint(uri: url)], connectionName: "test-worker", queueType: queueType,
                logger: logger),
            registrations: registrations, configuration: configuration, logger: logger, observer: observer)
        let task = Task { try await worker.run() }
        try await worker.waitUntilConsuming(timeout: .seconds(10))
        return RunningWorker(worker: worker, task: task, queue: queue, url: url)
    }

    func connect() async throws -> AMQPConnection {
        let logger = TestBroker.quietLogger("warren.tests")
        return try await AMQPConnection.connect(to: AMQPEndpoint(uri: url), logger: logger)
    }

    /// Publishes raw bytes to the work queue, confirmed.
    func publish(
        _ body: String, type: String? = WelcomeEmail.messageType, contentType: String? = "application/json",
        messageID: String = UUID().uuidString, headers: AMQPTable? = nil
    ) async throws {
        try await Self.publish(
            body, to: queue, url: url, type: type, contentType: contentType, messageID: messageID, headers: headers)
    }

    /// Publishes raw bytes to `queue`, confirmed, before any worker runs.
    static func publish(
        _ body: String, to queue: String, url: String, type: String? = WelcomeEmail.messageType,
        contentType: String? = "application/json", messageID: String = UUID().uuidString, headers: AMQPTable? = nil
    ) async throws {
        try await publishConfirmed(
            [
                (
                    Array(body.utf8),
                    AMQPProperties(
                        contentType: contentType, headers: headers, deliveryMode: .persistent, messageID: messageID,
                        timestamp: Date(), type: type)
                )
            ],
            to: queue, url: url)
    }

    func publish(_ email: WelcomeEmail) async throws {
        let body = String(decoding: try JSONEncoder().encode(email), as: UTF8.self)
        try await publish(body)
    }

    /// The dead letters of the queue, fetched without consuming them for good (they are requeued).
    /// Read through Warren's own API, as a user's integration test would.
    func deadLetters() async throws -> [DeadLetter] {
        try await withCleanups { cleanups in
            let transport = RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger())
            cleanups.add { await transport.close() }
            return try await transport.deadLetters(of: queue)
        }
    }

    /// Cancels the worker's task: handlers are interrupted and their messages requeued.
    func stop() async {
        task.cancel()
        _ = try? await task.value
    }

    /// A graceful shutdown: running handlers finish, the rest is requeued.
    func shutdownGracefully() async {
        worker.shutdown()
        _ = try? await task.value
    }
}
