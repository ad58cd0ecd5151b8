import Foundation
import Logging
import Testing
@_spi(WarrenTransport) import Warren
import WarrenAMQP
import WarrenLocalBroker
import WarrenTestSupport

/// Broker outages on a node of its own, so they never disturb the tests sharing the main node.
@Suite("Worker recovery (dedicated broker)", .serialized, .tags(.broker), .needs(.broker), .deletesItsQueues)
struct RecoveryTests {
    let recorder = Recorder()

    func startWorker(queue: String, url: String) -> (Worker, Task<Void, any Error>) {
        var logger = Logger(label: "warren.tests.recovery")
        logger.logLevel =
            ProcessInfo.processInfo.environment["WARREN_TEST_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .critical
        let registration = HandlerRegistration(WelcomeEmail.self, queue: queue) { [recorder] email, context in
            recorder.record(email, context)
        }
        let worker = Worker(
            transport: RabbitMQTransport(endpoints: [try! AMQPEndpoint(uri: url + "?heartbeat=1")], logger: logger),
            registrations: [registration],
            configuration: WorkerConfiguration(
                recovery: RecoveryPolicy(initialDelay: .milliseconds(200), maximumDelay: .seconds(1))),
            logger: logger)
        return (worker, Task { try await worker.run() })
    }

    func publish(_ email: String, queue: String, url: String) async throws {
        try await publishConfirmed(
            [
                (
                    Array(#"{"userId":"r","email":"\#(email)"}"#.utf8),
                    AMQPProperties(
                        contentType: "application/json", deliveryMode: .persistent, type: WelcomeEmail.messageType)
                )
            ],
            to: queue, url: url)
    }

    @Test func theWorkerReconnectsAfterTheBrokerRestartsAndConsumesAgain() async throws {
        let broker = try await bootingOneAtATime { try await LocalBroker.shared("recovery") }
        let queue = TestBroker.uniqueName()
        let (worker, task) = startWorker(queue: queue, url: broker.amqpURL)
        defer { task.cancel() }
        #expect(try await eventually { worker.isConsuming })
        try await publish("before@example.com", queue: queue, url: broker.amqpURL)
        #expect(try await eventually { recorder.calls(for: "before@example.com").count == 1 })

        try await broker.stopApp()
        #expect(try await eventually { !worker.isConsuming }, "the loss is noticed")
        #expect(worker.healthProblem != nil)
        try await broker.startApp()
        #expect(try await eventually(timeout: .seconds(30)) { worker.isConsuming }, "the worker reconnects by itself")
        try await publish("after@example.com", queue: queue, url: broker.amqpURL)
        #expect(try await eventually { recorder.calls(for: "after@example.com").count == 1 }, "and consumes again")
        worker.shutdown()
        try await task.value
    }

    /// The node restarts under a schedule that ticks every second: the leader's term ends with its connection, the
    /// process leads again once the node is back, finds the last tick in its durable queue and publishes the ticks of
    /// the outage (within the misfire threshold: on time), each once.
    @Test func ticksResumeAfterTheBrokerRestartsEachOnceButTheOneInFlight() async throws {
        let broker = try await bootingOneAtATime { try await LocalBroker.shared("recovery") }
        let queue = TestBroker.uniqueName("restart-ticks")
        let scope = TestBroker.uniqueName("restart").replacingOccurrences(of: "test.", with: "")
        let job = try RecurringJob("tick", schedule: .every(.seconds(1)), queue: queue) { TestTick(at: $0) }
        let scheduler = try Scheduler(
            jobs: [job],
            transport: RabbitMQTransport(
                endpoints: [try AMQPEndpoint(uri: broker.amqpURL + "?heartbeat=1")], logger: TestBroker.quietLogger()),
            scope: scope, campaignInterval: .milliseconds(200), logger: TestBroker.quietLogger())
        func depth() async -> Int {
            (try? await withBrokerChannel(broker.amqpURL) { try await $0.queueStatus(queue).messageCount }) ?? 0
        }
        var restartedAt = Date.distantPast
        var backAt = Date.distantFuture
        try await whileRunning([{ try await scheduler.run() }]) {
            guard try await eventually(timeout: .seconds(15), { await depth() >= 3 }) else {
                throw TestFailure("no ticks before the restart")
            }
            restartedAt = Date()
            try await broker.restart()
            backAt = Date()
            let after = await depth()
            guard try await eventually(timeout: .seconds(30), { await depth() >= after + 3 }) else {
                throw TestFailure("no ticks after the restart")
            }
            #expect(scheduler.role == .leader)
        }
        let runs = try await withBrokerChannel(broker.amqpURL) { channel in
            var runs: [AMQPDelivery] = []
            while let got = try await channel.get(queue: queue, noAck: true) { runs.append(got.delivery) }
            _ = try await channel.queueDelete(queue)
            return runs
        }
        let ticks = runs.compactMap { ScheduledRun(headers: $0.properties.headers ?? [:])?.scheduledFor }
        #expect(ticks.count == runs.count && ticks == ticks.sorted())
        // A run confirmed just before the node went, whose tick's record was not, is published again by the next
        // term with the same message id (an idempotency store drops it): at most that one, at the restart.
        let repeated = Dictionary(grouping: ticks, by: { $0 }).filter { $0.value.count > 1 }.keys
        #expect(repeated.count <= 1, "ticks published twice: \(repeated.sorted())")
        for tick in repeated {
            #expect(abs(tick.timeIntervalSince(restartedAt)) < 3, "a repeat only at the restart: \(tick)")
        }
        let unique = Array(Set(ticks)).sorted()
        let gaps = zip(unique, unique.dropFirst()).map { $1.timeIntervalSince($0) }
        #expect(
            gaps.allSatisfy { $0 == 1 },
            "every second, the outage's included (\(backAt.timeIntervalSince(restartedAt)) s): \(gaps)")
        #expect(unique.contains { $0 > restartedAt && $0 < backAt }, "the outage's ticks were caught up")
    }

    @Test func aTransportThatOnlyPublishesIsConnectedAgainAfterARestartWithoutPublishing() async throws {
        let broker = try await bootingOneAtATime { try await LocalBroker.shared("recovery") }
        let transport = RabbitMQTransport(
            endpoints: [try AMQPEndpoint(uri: broker.amqpURL)],
            reconnect: RecoveryPolicy(initialDelay: .milliseconds(100), maximumDelay: .milliseconds(500)),
            logger: TestBroker.quietLogger())
        let running = Task { try await transport.run() }
        #expect(try await eventually { transport.isConnected })
        try await broker.stopApp()
        #expect(try await eventually { !transport.isConnected }, "the loss is seen")
        try await broker.startApp()
        #expect(
            try await eventually(timeout: .seconds(30)) { transport.isConnected },
            "connected again, with nothing published")
        running.cancel()
        try await running.value
        #expect(!transport.isConnected, "closed when its task ends")
    }

    @Test func aFrozenBrokerIsDetectedByHeartbeatsAndRecoveredFrom() async throws {
        let broker = try await bootingOneAtATime { try await LocalBroker.shared("recovery") }
        let queue = TestBroker.uniqueName()
        let (worker, task) = startWorker(queue: queue, url: broker.amqpURL)
        defer { task.cancel() }
        #expect(try await eventually { worker.isConsuming })
        await broker.pause()
        let noticed = try await eventually(timeout: .seconds(10)) { !worker.isConsuming }
        broker.resume()
        #expect(noticed, "missed heartbeats reveal the frozen broker")
        #expect(try await eventually(timeout: .seconds(30)) { worker.isConsuming })
        try await publish("thawed@example.com", queue: queue, url: broker.amqpURL)
        #expect(try await eventually { recorder.calls(for: "thawed@example.com").count == 1 })
        worker.shutdown()
        try await task.value
    }

    @Test func aDeletedQueueIsDeclaredAgainAndConsumed() async throws {
        let broker = try await bootingOneAtATime { try await LocalBroker.shared("recovery") }
        let queue = TestBroker.uniqueName()
        let (worker, task) = startWorker(queue: queue, url: broker.amqpURL)
        defer { task.cancel() }
        #expect(try await eventually { worker.isConsuming })
        let connection = try await AMQPConnection.connect(to: AMQPEndpoint(uri: broker.amqpURL))
        try await connection.openChannel().queueDelete(queue)
        await connection.close()
        // The broker cancels the consumer; the worker must not end up consuming nothing.
        #expect(
            try await eventually(timeout: .seconds(15)) {
                let probe = try await AMQPConnection.connect(to: AMQPEndpoint(uri: broker.amqpURL))
                let consumers = try? await probe.openChannel().queueStatus(queue).consumerCount
                await probe.close()
                return consumers == 1
            })
        try await publish("again@example.com", queue: queue, url: broker.amqpURL)
        #expect(try await eventually { recorder.calls(for: "again@example.com").count == 1 })
        worker.shutdown()
        try await task.value
    }

    func quietLogger() -> Logger {
        let logger = TestBroker.quietLogger("warren.tests.recovery")
        return logger
    }

    @Test func aPublishWaitsForTheConnectionToComeBackAndIsDeliveredOnce() async throws {
        let broker = try await bootingOneAtATime { try await LocalBroker.shared("recovery") }
        let queue = TestBroker.uniqueName()
        let transport = RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: broker.amqpURL)], logger: quietLogger())
        try await transport.start()
        try await transport.prepare(queue: queue, delays: [])
        let publisher = WarrenPublisher(transport: transport)
        try await publisher.publish(WelcomeEmail(userId: "1", email: "before@example.com"), to: .queue(queue))

        try await broker.stopApp()
        let publishing = Task {
            let id = try await publisher.publish(
                WelcomeEmail(userId: "2", email: "during@example.com"), to: .queue(queue), messageID: "during")
            return (id, ContinuousClock.now)
        }
        try await Task.sleep(for: .seconds(2))  // the outage
        let restarting = ContinuousClock.now
        try await broker.startApp()
        let (id, confirmedAt) = try await publishing.value
        #expect(id == "during")
        #expect(confirmedAt > restarting, "confirmed only once the broker was back")

        let probe = try await AMQPConnection.connect(to: AMQPEndpoint(uri: broker.amqpURL), logger: quietLogger())
        let channel = try await probe.openChannel()
        var ids: [String] = []
        while let result = try await channel.get(queue: queue, noAck: true) {
            ids.append(result.delivery.properties.messageID ?? "?")
        }
        await probe.close()
        #expect(ids.count == 2 && ids.last == "during", "both published messages are in the queue: \(ids)")
        await transport.close()
    }

    @Test func aPublishReportsTheOutageOnceItsRecoveryTimeIsSpent() async throws {
        let broker = try await bootingOneAtATime { try await LocalBroker.shared("recovery") }
        let transport = RabbitMQTransport(
            endpoints: [try AMQPEndpoint(uri: broker.amqpURL)], publishRecoveryTimeout: .seconds(1),
            logger: quietLogger())
        try await transport.start()
        try await broker.stopApp()
        let clock = ContinuousClock()
        let started = clock.now
        do {
            try await transport.publish([1], to: .queue("anything"), properties: AMQPProperties())
            Issue.record("a publish during an outage must fail once its recovery time is spent")
        } catch let error as AMQPError {
            #expect([.connectionLost, .connectionFailed, .connectionClosed].contains(error.code), "\(error)")
            #expect(!"\(error)".contains("guest:guest"), "no password in the error")
        }
        let waited = clock.now - started
        try await broker.startApp()
        #expect(waited < .seconds(5), "bounded: \(waited)")
        // Afterwards the transport works again without a restart.
        let queue = TestBroker.uniqueName()
        try await transport.prepare(queue: queue, delays: [])
        try await transport.publish([2], to: .queue(queue), properties: AMQPProperties())
        await transport.close()
    }
}

/// Runs `body` on a channel of a connection of its own to `url`, closed afterwards.
private func withBrokerChannel<T>(_ url: String, _ body: (AMQPChannel) async throws -> T) async throws -> T {
    let connection = try await AMQPConnection.connect(
        to: try AMQPEndpoint(uri: url), connectionName: "recovery check", logger: TestBroker.quietLogger())
    do {
        let value = try await body(try await connection.openChannel())
        await connection.close()
        return value
    } catch {
        await connection.close()
        throw error
    }
}
