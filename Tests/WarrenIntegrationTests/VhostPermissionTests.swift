import Foundation
import Logging
import Testing
import Warren
import WarrenAMQP
import WarrenLocalBroker
import WarrenTestSupport

/// A worker runs with a user that has permissions on one vhost only, limited to the names Warren uses for its queue
/// (the permissions documented in docs/running-in-production.md).
@Suite("Least-privilege user on its own vhost (broker)", .tags(.broker), .needs(.broker), .deletesItsQueues)
struct VhostPermissionTests {
    let recorder = Recorder()

    @Test func aWorkerRunsWithTheDocumentedPermissionsOnItsVhostOnly() async throws {
        let broker = try await bootingOneAtATime { try await LocalBroker.shared() }
        let id = UUID().uuidString.prefix(8).lowercased()
        let vhost = "warren-\(id)"
        let user = "worker-\(id)"
        let password = "s3cret-\(id)"
        let queue = "orders-\(id)"
        let names = "\(queue)|\(queue)\\..+|warren\\.dead-letters"
        try await broker.rabbitmqctl(["add_vhost", vhost])
        try await broker.rabbitmqctl(["add_user", user, password])
        try await broker.rabbitmqctl([
            "set_permissions", "-p", vhost, user, "^(\(names))$", "^(amq\\.default|\(names))$", "^(\(names))$",
        ])
        let url = "amqp://\(user):\(password)@127.0.0.1:\(broker.port)/\(vhost)"

        // Nothing on the default vhost.
        do {
            _ = try await AMQPConnection.connect(
                to: AMQPEndpoint(uri: "amqp://\(user):\(password)@127.0.0.1:\(broker.port)/"))
            Issue.record("the user has no permission on /")
        } catch let error as AMQPError {
            #expect(error.code == .authenticationFailed || error.code == .connectionClosed, "\(error)")
            #expect(!error.description.contains(password), "no password in the error")
        }

        let logger = TestBroker.quietLogger("warren.tests.vhost")
        let policy = RetryPolicy(maxAttempts: 2, backoff: .explicit([.milliseconds(100)]))
        let registration = HandlerRegistration(WelcomeEmail.self, queue: queue, options: HandlerOptions(retry: policy))
        { [recorder] email, context in
            recorder.record(email, context)
            if email.email.hasPrefix("fail") { throw Flaky() }
        }
        let transport = RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: url)], logger: logger)
        let worker = Worker(transport: transport, registrations: [registration], logger: logger)
        let task = Task { try await worker.run() }
        defer { task.cancel() }
        #expect(
            try await eventually { worker.isConsuming },
            "declared its topology and consumes: \(worker.healthProblem ?? "")")

        let publisher = WarrenPublisher(transport: transport)
        try await publisher.publish(WelcomeEmail(userId: "1", email: "ok@example.com"), to: .queue(queue))
        try await publisher.publish(WelcomeEmail(userId: "2", email: "fail@example.com"), to: .queue(queue))
        #expect(try await eventually { recorder.calls(for: "ok@example.com").count == 1 })
        #expect(
            try await eventually { recorder.calls(for: "fail@example.com").count == 2 },
            "retried through its delay queue")

        // The dead letter arrived, readable by the same user.
        let reader = try await AMQPConnection.connect(to: AMQPEndpoint(uri: url))
        let channel = try await reader.openChannel()
        #expect(try await eventually { try await channel.queueStatus("\(queue).dead-letters").messageCount == 1 })
        // And nothing outside its names.
        await #expect(throws: AMQPError.self) { try await channel.queueDeclare("other-\(id)", durable: true) }
        await reader.close()

        worker.shutdown()
        try await task.value
        try await broker.rabbitmqctl(["delete_vhost", vhost])
        try await broker.rabbitmqctl(["delete_user", user])
    }
}
