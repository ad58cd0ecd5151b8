import Foundation
import Testing
import WarrenAMQP
import WarrenHTTP
import WarrenLocalBroker
import WarrenTestSupport

@_spi(WarrenTransport) @testable import Warren

/// The health endpoints against a real broker that is stopped, frozen and has queues deleted: a node of its own.
@Suite(
    "Health endpoints against RabbitMQ (dedicated broker)", .serialized, .tags(.broker), .needs(.broker),
    .deletesItsQueues)
struct HTTPHealthBrokerTests {
    static let brokerName = "health"

    /// - Parameter connectionName: the connection's metric label; other tests' transports share the default one.
    func worker(
        _ registrations: [HandlerRegistration], url: String, health: HealthPolicy = HealthPolicy(),
        connectionName: String = "warren",
        recovery: RecoveryPolicy = RecoveryPolicy(initialDelay: .milliseconds(200), maximumDelay: .seconds(1))
    ) throws -> Worker {
        Worker(
            transport: RabbitMQTransport(
                endpoints: [try AMQPEndpoint(uri: url + "?heartbeat=1")], connectionName: connectionName,
                logger: TestBroker.quietLogger()),
            registrations: registrations,
            configuration: WorkerConfiguration(
                recovery: recovery, health: health),
            logger: TestBroker.quietLogger())
    }

    func publish(_ count: Int, to queue: String, url: String, prefix: String = "m") async throws {
        try await publishConfirmed(
            (0..<count).map { index in
                (
                    Array(#"{"userId":"\#(index)","email":"\#(prefix)\#(index)@example.com"}"#.utf8),
                    AMQPProperties(
                        contentType: "application/json", messageID: "\(prefix)-\(index)", timestamp: Date(),
                        type: WelcomeEmail.messageType)
                )
            },
            to: queue, url: url)
    }

    @Test func readinessFollowsTheBrokerWhileLivenessDoesNot() async throws {
        try await withCleanups { cleanups in
            let broker = try await bootingOneAtATime { try await LocalBroker.shared(Self.brokerName) }
            let queue = TestBroker.uniqueName()
            // Recovery waits 2 s before it declares a deleted queue again: the "cancelled" window below is that long.
            let worker = try worker(
                [HandlerRegistration(WelcomeEmail.self, queue: queue) { _, _ in }], url: broker.amqpURL,
                recovery: RecoveryPolicy(initialDelay: .seconds(2), maximumDelay: .seconds(2), jitter: 0))
            let running = Task { try await worker.run() }
            defer { running.cancel() }
            try await worker.waitUntilConsuming()
            try await withHTTPServer(WarrenHealthEndpoints(workers: [worker])) { port in
                let ready = await httpGet(port: port, "/health/ready")
                #expect(ready.status == 200 && ready.json?["status"] as? String == "ready", "\(ready.body)")
                #expect(ready.queueStates[queue] == "consuming", "\(ready.body)")

                // A stopped broker closes the connection: 503 at once (within 5 s), live all along.
                try await broker.stopApp()
                let clock = ContinuousClock()
                #expect(
                    try await eventually(timeout: .seconds(5)) {
                        await httpGet(port: port, "/health/ready").status == 503
                    })
                let notReady = await httpGet(port: port, "/health/ready")
                #expect(
                    notReady.json?["status"] as? String == "not_ready" && notReady.queueStates[queue] == "recovering",
                    "\(notReady.body)")
                #expect(
                    !notReady.body.contains("amqp://") && !notReady.body.contains("password"),
                    "no credentials: \(notReady.body)")
                #expect(
                    await httpGet(port: port, "/health/live").status == 200, "a broker outage is no liveness problem")

                try await broker.startApp()
                #expect(
                    try await eventually(timeout: .seconds(30)) {
                        await httpGet(port: port, "/health/ready").status == 200
                    },
                    "ready again once every consumer is back")
                #expect(await httpGet(port: port, "/health/ready").queueStates[queue] == "consuming")

                // A frozen broker says nothing: noticed by the missed heartbeats (1 s each here), not at once, and within
                // 5 s (plus 2 s of slack for a loaded two-core machine).
                await broker.pause()
                let frozen = clock.now
                let noticed = try await eventually(timeout: .seconds(7)) {
                    await httpGet(port: port, "/health/ready").status == 503
                }
                let took = clock.now - frozen
                broker.resume()
                #expect(noticed, "503 within 7 s of the freeze")
                #expect(
                    took >= .milliseconds(900),
                    "noticed by missed heartbeats (at least one heartbeat), not at once: \(took)")
                #expect(await httpGet(port: port, "/health/live").status == 200)
                #expect(
                    try await eventually(timeout: .seconds(30)) {
                        await httpGet(port: port, "/health/ready").status == 200
                    })

                // A queue deleted under the worker: named until the worker declared it again.
                let connection = try await AMQPConnection.connect(
                    to: AMQPEndpoint(uri: broker.amqpURL), logger: TestBroker.logger)
                cleanups.add { await connection.close() }
                _ = try await connection.openChannel().queueDelete(queue)
                var named = HTTPAnswer(status: 0, body: "")
                // The window lasts until the worker declared the queue again, after its recovery's first backoff (2 s).
                let sawIt = try await eventually(timeout: .seconds(5), pollEvery: .milliseconds(50)) {
                    named = await httpGet(port: port, "/health/ready")
                    return named.status == 503
                }
                #expect(sawIt && named.queueStates[queue] == "cancelled", "\(named.body)")
                #expect(
                    try await eventually(timeout: .seconds(30)) {
                        await httpGet(port: port, "/health/ready").status == 200
                    })
                #expect(try await connection.openChannel().queueStatus(queue).consumerCount == 1, "consumed again")
            }
            worker.shutdown()
            try await running.value
        }
    }

    @Test func aHostThatOnlyPublishesIsReadyAgainAfterARestartWithoutPublishing() async throws {
        let broker = try await bootingOneAtATime { try await LocalBroker.shared(Self.brokerName) }
        let transport = RabbitMQTransport(
            endpoints: [try AMQPEndpoint(uri: broker.amqpURL + "?heartbeat=1")],
            reconnect: RecoveryPolicy(initialDelay: .milliseconds(100), maximumDelay: .milliseconds(500)),
            logger: TestBroker.quietLogger())
        let running = Task { try await transport.run() }
        defer { running.cancel() }
        try await withHTTPServer(WarrenHealthEndpoints(transports: [transport])) { port in
            #expect(try await eventually { await httpGet(port: port, "/health/ready").status == 200 })
            #expect(await httpGet(port: port, "/health/ready").json?["connected"] as? Bool == true)
            try await broker.stopApp()
            #expect(
                try await eventually(timeout: .seconds(5)) { await httpGet(port: port, "/health/ready").status == 503 })
            try await broker.startApp()
            #expect(
                try await eventually(timeout: .seconds(30)) {
                    await httpGet(port: port, "/health/ready").status == 200
                },
                "connected again with nothing published")
        }
    }

    @Test func aHandlerThatIgnoresCancellationMakesTheWorkerNotLive() async throws {
        let broker = try await bootingOneAtATime { try await LocalBroker.shared(Self.brokerName) }
        let queue = TestBroker.uniqueName()
        let release = Release()
        let registration = HandlerRegistration(
            WelcomeEmail.self, queue: queue, options: HandlerOptions(maxConcurrentHandlers: 2, timeout: .seconds(1))
        ) { _, _ in
            await release.wait()  // deaf to cancellation: its timeout cancels it, and it goes on
        }
        let worker = try worker(
            [registration], url: broker.amqpURL,
            health: HealthPolicy(stallAfter: .seconds(60), cancellationGrace: .seconds(1)))
        let running = Task { try await worker.run() }
        defer { running.cancel() }
        try await worker.waitUntilConsuming()
        try await withHTTPServer(WarrenHealthEndpoints(workers: [worker])) { port in
            #expect(await httpGet(port: port, "/health/live").status == 200)
            try await publish(1, to: queue, url: broker.amqpURL, prefix: "deaf")
            var answer = HTTPAnswer(status: 0, body: "")
            #expect(
                try await eventually(timeout: .seconds(10)) {
                    answer = await httpGet(port: port, "/health/live")
                    return answer.status == 503
                }, "stuck past its timeout (1 s) and the grace (1 s)")
            let problems = answer.json?["problems"] as? [[String: Any]] ?? []
            #expect(
                problems.first?["kind"] as? String == "handler_stuck" && problems.first?["queue"] as? String == queue,
                "\(answer.body)")
            #expect((problems.first?["stuck_seconds"] as? Double ?? 0) > 1)
            #expect(
                await httpGet(port: port, "/health/ready").status == 200,
                "it still consumes: readiness is another question")
            release.open()
            #expect(
                try await eventually { await httpGet(port: port, "/health/live").status == 200 },
                "live again once it returned")
        }
        worker.shutdown()
        try await running.value
    }

    /// A consumer loop that does not take what RabbitMQ delivered to it (its tasks do not get to run: handlers
    /// holding every thread of the cooperative pool, a deadlock) while it has free slots is not live. The loop's
    /// part is played by the test, which holds the deliveries back; the deliveries and their count are the real
    /// consumer's, counted on the connection's I/O thread.
    @Test func deliveriesNobodyTakesMakeAStalledLoop() async throws {
        let broker = try await bootingOneAtATime { try await LocalBroker.shared(Self.brokerName) }
        let queue = TestBroker.uniqueName()
        let transport = RabbitMQTransport(
            endpoints: [try AMQPEndpoint(uri: broker.amqpURL)], logger: TestBroker.quietLogger())
        try await transport.start()
        try await transport.prepare(queue: queue, delays: [])
        let consumer = try await transport.consume(queue: queue, prefetch: 10)
        let progress = ConsumerProgress(queue: queue, concurrency: 4)
        progress.attach(received: { consumer.received }, inFlight: { 0 })
        let policy = HealthPolicy(stallAfter: .milliseconds(500))
        #expect(progress.problems(now: .now, policy: policy).isEmpty)

        try await publish(3, to: queue, url: broker.amqpURL, prefix: "held")
        #expect(try await eventually { consumer.received == 3 }, "counted as they arrive, before anyone takes them")
        var stalled: [WorkerLiveness.Problem] = []
        #expect(
            try await eventually(timeout: .seconds(5)) {
                stalled = progress.problems(now: .now, policy: policy)
                return !stalled.isEmpty
            })
        #expect(
            stalled.first?.kind == .consumerStalled && stalled.first?.queue == queue
                && (stalled.first?.duration ?? .zero) >= .milliseconds(500))

        var iterator = consumer.makeAsyncIterator()
        for _ in 0..<3 {
            let delivery = try #require(try await iterator.next())
            progress.tookDelivery()
            try delivery.ack()
        }
        #expect(progress.problems(now: .now, policy: policy).isEmpty, "taking them is progress")
        // Past the stall window (read in virtual time, no sleeping): nothing waits any more, so nothing is stalled.
        #expect(
            progress.problems(now: .now.advanced(by: .milliseconds(700)), policy: policy).isEmpty,
            "and nothing waits any more")
        await consumer.close()
        await transport.close()
    }

    @Test func metricsAreServedInPrometheusFormAndCountWhatWasHandled() async throws {
        let broker = try await bootingOneAtATime { try await LocalBroker.shared(Self.brokerName) }
        let queue = TestBroker.uniqueName()
        let registration = HandlerRegistration(
            WelcomeEmail.self, queue: queue,
            options: HandlerOptions(retry: RetryPolicy(maxAttempts: 2, backoff: .explicit([.milliseconds(200)])))
        ) { email, _ in
            if email.email.hasPrefix("bounce") { throw Reject("no such mailbox") }
            if email.email.hasPrefix("flaky") { throw Flaky() }
        }
        _ = testMetrics  // the process's metrics bootstrap, shared with every test
        // A connection name of its own: the gauge is per name, and other tests' transports use the default.
        let connection = TestBroker.uniqueName("metrics-connection")
        let worker = try worker([registration], url: broker.amqpURL, connectionName: connection)
        let running = Task { try await worker.run() }
        defer { running.cancel() }
        try await worker.waitUntilConsuming()
        try await publish(3, to: queue, url: broker.amqpURL, prefix: "ok")
        try await publish(2, to: queue, url: broker.amqpURL, prefix: "bounce")
        try await publish(1, to: queue, url: broker.amqpURL, prefix: "flaky")
        try await withHTTPServer(WarrenHealthEndpoints(workers: [worker], prometheus: testPrometheus)) { port in
            var samples = PrometheusScrape()
            let settled = try await eventually(timeout: .seconds(20)) {
                let answer = await httpGet(port: port, "/metrics")
                guard answer.status == 200 else { return false }
                samples = try await parsePrometheus(answer.body)
                return samples.value("warren_messages_total", ["queue": queue, "outcome": "dead-letter"]) == 3
            }
            #expect(settled, "three ok, two rejected and one flaky (retried once, then dead-lettered)")
            let type = ["queue": queue, "type": WelcomeEmail.messageType]
            #expect(samples.value("warren_messages_total", type.merging(["outcome": "ack"]) { $1 }) == 3)
            #expect(samples.value("warren_messages_total", type.merging(["outcome": "retry"]) { $1 }) == 1)
            #expect(samples.value("warren_retries_total", type) == 1)
            #expect(samples.value("warren_dead_letters_total", type.merging(["reason": "rejected"]) { $1 }) == 2)
            #expect(
                samples.value("warren_dead_letters_total", type.merging(["reason": "retries-exhausted"]) { $1 }) == 1)
            #expect(samples.value("warren_handler_duration_seconds_count", type) == 7)
            #expect(samples.value("warren_handler_duration_seconds_bucket", type.merging(["le": "+Inf"]) { $1 }) == 7)
            // Published raw (the AMQP timestamp's whole seconds only): no wait but the retry's, which follows its failure.
            #expect(samples.value("warren_queue_wait_seconds_count", type) == 1)
            #expect(samples.value("warren_handlers_in_flight", ["queue": queue]) == 0)
            #expect(samples.value("warren_consumers", ["queue": queue]) == 1)
            #expect(samples.value("warren_connection_up", ["connection": connection]) == 1)
            #expect(samples.value("warren_reconnects_total", ["connection": connection]) != nil)
            #expect(
                samples.kinds["warren_handler_duration_seconds"] == "histogram"
                    && samples.kinds["warren_messages"] == "counter",
                "prometheus_client names a counter's family without _total: \(samples.kinds)")
        }
        worker.shutdown()
        try await running.value
        #expect(testPrometheus.conflicts.isEmpty, "\(testPrometheus.conflicts)")
    }
}

/// A Prometheus exposition as Python's `prometheus_client` parser read it.
struct PrometheusScrape: Sendable {
    struct Sample: Sendable {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    var samples: [Sample] = []
    /// Each family's type, by name.
    var kinds: [String: String] = [:]

    /// The value of the sample `name` whose labels include `labels` (summed when several match); `nil` when none does.
    func value(_ name: String, _ labels: [String: String]) -> Double? {
        let matching = samples.filter { sample in
            sample.name == name && labels.allSatisfy { key, value in sample.labels[key] == value }
        }
        return matching.isEmpty ? nil : matching.map(\.value).reduce(0, +)
    }
}

/// Parses an exposition with the reference parser (`prometheus_client.parser`, from PyPI): what a Prometheus server
/// reads, not what Warren thinks it wrote.
func parsePrometheus(_ text: String) async throws -> PrometheusScrape {
    let script = """
        import json, sys
        from prometheus_client.parser import text_string_to_metric_families
        out = {"samples": [], "kinds": {}}
        for family in text_string_to_metric_families(sys.stdin.read()):
            out["kinds"][family.name] = family.type
            for s in family.samples:
                out["samples"].append([s.name, s.labels, s.value])
        print(json.dumps(out))
        """
    let parsed = try await runProcess("/usr/bin/env", ["python3", "-c", script], input: Data(text.utf8))
    let problem = parsed.errors
    guard parsed.status == 0,
        let object = try JSONSerialization.jsonObject(with: Data(parsed.output.utf8)) as? [String: Any],
        let rows = object["samples"] as? [[Any]]
    else {
        throw TestFailure(
            "prometheus_client could not parse the exposition (pip install prometheus_client): \(problem)\n\(text)")
    }
    let samples = rows.compactMap { row -> PrometheusScrape.Sample? in
        guard row.count == 3, let name = row[0] as? String, let labels = row[1] as? [String: String] else { return nil }
        return .init(name: name, labels: labels, value: (row[2] as? NSNumber)?.doubleValue ?? .nan)
    }
    return PrometheusScrape(samples: samples, kinds: object["kinds"] as? [String: String] ?? [:])
}
