import Foundation
import Synchronization
import Testing
import WarrenAMQP
import WarrenLocalBroker
import WarrenTestSupport

/// Faults that affect a whole node (alarms, forced closes, a frozen VM) run on a node of their own, one at a time,
/// so they never disturb the tests sharing the main node.
@Suite("Broker faults (dedicated broker)", .serialized, .tags(.broker), .needs(.broker), .deletesItsQueues)
struct BrokerFaultTests {
    static let broker = DedicatedBroker()

    @Test func brokerClosingTheConnectionIsReportedWithItsReplyCode() async throws {
        let broker = try await Self.broker.get()
        let connection = try await AMQPConnection.connect(
            to: AMQPEndpoint(uri: broker.amqpURL), connectionName: "forced-close")
        let channel = try await connection.openChannel()
        let queue = TestBroker.uniqueName()
        try await channel.queueDeclare(queue, exclusive: true)
        let consumer = try await channel.consume(queue: queue)
        let events = connection.events()

        try await broker.rabbitmqctl(["close_all_connections", "closed by test"])
        await connection.waitUntilClosed()
        let reason = try #require(connection.closeReason)
        #expect(reason.code == .connectionClosed)
        #expect(reason.replyCode == 320)
        #expect(reason.replyText?.contains("closed by test") == true)

        var iterator = consumer.makeAsyncIterator()
        let consumerError = await #expect(throws: AMQPError.self) { _ = try await iterator.next() }
        #expect(consumerError?.replyCode == 320)
        var last: AMQPConnectionEvent?
        for await event in events { last = event }
        #expect(last == .closed(reason))
    }

    @Test func missedHeartbeatsRevealAFrozenBroker() async throws {
        let broker = try await Self.broker.get()
        let connection = try await AMQPConnection.connect(to: AMQPEndpoint(uri: broker.amqpURL + "?heartbeat=1"))
        _ = try await connection.openChannel()
        await broker.pause()
        defer { broker.resume() }
        let clock = ContinuousClock()
        let started = clock.now
        let lost = try await eventually(timeout: .seconds(8)) { !connection.isOpen }
        broker.resume()
        #expect(lost)
        #expect(connection.closeReason?.code == .connectionLost)
        #expect(clock.now - started < .seconds(6), "two missed 1 s heartbeats should be noticed within a few seconds")
    }

    @Test func aPublishWhoseConfirmNeverComesTimesOut() async throws {
        let broker = try await Self.broker.get()
        // No heartbeats: only the confirm timeout can end the wait.
        let connection = try await AMQPConnection.connect(
            to: AMQPEndpoint(uri: broker.amqpURL + "?heartbeat=0"), logger: TestBroker.logger)
        let channel = try await connection.openChannel()
        try await channel.enableConfirms(confirmTimeout: .seconds(1))
        let queue = TestBroker.uniqueName()
        try await channel.queueDeclare(queue, exclusive: true)
        try await channel.publish("before".bytes, routingKey: queue)
        await broker.pause()
        defer { broker.resume() }
        let clock = ContinuousClock()
        let started = clock.now
        let error = await #expect(throws: AMQPError.self) {
            try await channel.publish("frozen".bytes, routingKey: queue)
        }
        broker.resume()
        #expect(error?.code == .timeout)
        // The confirm's timeout, not before it; the upper bound (room for a loaded machine) catches a publish that hangs.
        #expect(clock.now - started >= .seconds(1) && clock.now - started < .seconds(8))
        await connection.close()
    }

    @Test func memoryAlarmBlocksAndUnblocksTheConnection() async throws {
        let broker = try await Self.broker.get()
        let connection = try await AMQPConnection.connect(to: AMQPEndpoint(uri: broker.amqpURL))
        let channel = try await connection.openChannel()
        let queue = TestBroker.uniqueName()
        try await channel.queueDeclare(queue, exclusive: true)
        var events = connection.events().makeAsyncIterator()

        try await broker.rabbitmqctl(["set_vm_memory_high_watermark", "absolute", "1"])
        // RabbitMQ blocks a connection when it next publishes during an alarm.
        try await channel.publish("during alarm".bytes, routingKey: queue)
        let blocked = await events.next()
        guard case .blocked(let reason)? = blocked else {
            Issue.record("expected .blocked, got \(String(describing: blocked))")
            try await broker.rabbitmqctl(["set_vm_memory_high_watermark", "0.4"])
            return
        }
        #expect(reason.contains("memory"))
        #expect(connection.isBlocked)

        // A publish while blocked is held back (not lost) until the broker unblocks.
        let done = Mutex(false)
        let held = Task {
            try await channel.publish("while blocked".bytes, routingKey: queue)
            done.withLock { $0 = true }
        }
        try await Task.sleep(for: .milliseconds(300))
        #expect(!done.withLock { $0 }, "no confirm while the broker blocks the connection")
        try await broker.rabbitmqctl(["set_vm_memory_high_watermark", "0.4"])
        #expect(await events.next() == .unblocked)
        #expect(!connection.isBlocked)
        try await held.value
        #expect(try await eventually { try await channel.queueStatus(queue).messageCount == 2 })
        await connection.close()
    }

    @Test func everyPublishQueuedWhenTheBrokerDiesGetsAnAnswer() async throws {
        let broker = try await Self.broker.get()
        let connection = try await AMQPConnection.connect(
            to: AMQPEndpoint(uri: broker.amqpURL), connectionName: "dies-mid-batch", logger: TestBroker.logger)
        let channel = try await connection.openChannel()
        try await channel.enableConfirms()
        let queue = TestBroker.uniqueName()
        try await channel.queueDeclare(queue, autoDelete: true)
        let batch = [AMQPOutboundMessage](
            repeating: AMQPOutboundMessage(body: [UInt8](repeating: 7, count: 4096), routingKey: queue), count: 2_000)
        // Batches keep the connection's thread writing when the node dies (its sockets reset, so a write fails):
        // publishes the thread took in the same pass as the failing write must fail too, not wait for ever.
        let dying = Task {
            try await Task.sleep(for: .milliseconds(300))
            broker.kill()
        }
        var failed = false
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(30))
        while !failed, clock.now < deadline {
            // Not a task group: it would wait for a batch that never ends, and the test with it.
            let answers = Mutex<[Result<Void, AMQPError>]?>(nil)
            Task {
                let results = await channel.publish(contentsOf: batch)
                answers.withLock { $0 = results }
            }
            guard try await eventually(timeout: .seconds(20), { answers.withLock { $0 != nil } }),
                let answers = answers.withLock({ $0 })
            else {
                Issue.record("some publishes of a batch never got an answer")
                break
            }
            #expect(answers.count == batch.count)
            failed = answers.contains { if case .failure = $0 { true } else { false } }
        }
        try await dying.value
        try await broker.restart()
        #expect(failed, "the node died under a batch")
    }

    @Test func stoppingTheBrokerApplicationEndsTheConnection() async throws {
        let broker = try await Self.broker.get()
        let connection = try await AMQPConnection.connect(to: AMQPEndpoint(uri: broker.amqpURL))
        let channel = try await connection.openChannel()
        try await broker.stopApp()
        await connection.waitUntilClosed()
        #expect(connection.closeReason?.code == .connectionClosed || connection.closeReason?.code == .connectionLost)
        await #expect(throws: AMQPError.self) { try await channel.queueDeclare(TestBroker.uniqueName()) }
        try await broker.startApp()
        let again = try await AMQPConnection.connect(to: AMQPEndpoint(uri: broker.amqpURL))
        #expect(again.isOpen)
        await again.close()
    }
}

/// A second node for node-wide faults, started on first use and stopped when the test process exits.
struct DedicatedBroker {
    func get() async throws -> LocalBroker {
        try await bootingOneAtATime { try await LocalBroker.shared("faults") }
    }
}
