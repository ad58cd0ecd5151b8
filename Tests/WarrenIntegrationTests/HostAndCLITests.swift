import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

/// The executables, driven from outside as a user (or an acceptance check) would.
@Suite("orders-worker and the warren CLI (broker)", .serialized, .tags(.broker), .needs(.broker), .deletesItsQueues)
struct HostAndCLITests {
    static var binDirectory: URL { LaunchedProcess.binDirectory }

    typealias Run = ProcessRun

    static func run(_ tool: String, _ arguments: [String], url: String?, environment extra: [String: String] = [:])
        async throws -> Run
    {
        var environment: [String: String?] = ["WARREN_AMQP_URL": url]
        for (name, value) in extra { environment[name] = value }
        return try await runProcess(binDirectory.appendingPathComponent(tool).path, arguments, environment: environment)
    }

    @Test func cliPublishesListsShowsReplaysAndPurgesDeadLetters() async throws {
        try await withCleanups { cleanups in
            let url = try await TestBroker.url()
            let queue = TestBroker.uniqueName()
            // A worker that rejects everything once, so each message lands in the dead letters.
            let rejects = HandlerRegistration(WelcomeEmail.self, queue: queue) { email, context in
                if context.attempt == 1 && context.headers["replayed"] == nil {
                    throw Reject("first time for \(email.email)")
                }
            }
            let worker = try await RunningWorker.start(queue: queue, registrations: [rejects])
            cleanups.add { await worker.stop() }

            var ids: [String] = []
            for n in 0..<3 {
                let published = try await Self.run(
                    "warren",
                    [
                        "publish", "--routing-key", queue, "--type", "email.welcome", "--header", "source=cli",
                        "--body", #"{"userId":"\#(n)","email":"u\#(n)@example.com"}"#,
                    ], url: url)
                #expect(published.status == 0, "\(published.errors)")
                ids.append(published.output.trimmingCharacters(in: .whitespacesAndNewlines))
            }
            #expect(try await eventually { try await worker.deadLetters().count == 3 })

            let list = try await Self.run("warren", ["dlx", "list", "--queue", queue, "--json"], url: url)
            #expect(list.status == 0)
            let letters = try JSONSerialization.jsonObject(with: Data(list.output.utf8)) as? [[String: Any]] ?? []
            #expect(Set(letters.compactMap { $0["message_id"] as? String }) == Set(ids))
            #expect(
                letters.allSatisfy {
                    $0["reason"] as? String == "rejected" && $0["original_routing_key"] as? String == queue
                })
            #expect(try await worker.deadLetters().count == 3, "listing does not consume")

            let limited = try await Self.run(
                "warren", ["dlx", "list", "--queue", queue, "--json", "--limit", "2"], url: url)
            #expect((try JSONSerialization.jsonObject(with: Data(limited.output.utf8)) as? [Any])?.count == 2)

            let show = try await Self.run(
                "warren", ["dlx", "show", "--queue", queue, "--message-id", ids[0]], url: url)
            #expect(show.status == 0)
            #expect(show.output.contains("u0@example.com"))
            #expect(show.output.contains("\"source\" : \"cli\""))

            // Replay one: it goes back to the work queue with a fresh attempt count and leaves the dead letters.
            let replay = try await Self.run(
                "warren", ["dlx", "replay", "--queue", queue, "--message-id", ids[1]], url: url)
            #expect(replay.status == 0, "\(replay.errors)")
            #expect(
                try await eventually { try await worker.deadLetters().count == 3 },
                "rejected again on its fresh first attempt")
            let afterReplay = try await worker.deadLetters()
            let replayed = try #require(afterReplay.first { $0.properties.messageID == ids[1] })
            #expect(
                replayed.properties.headers?[WarrenHeader.attempts]?.int64Value == 1,
                "the replay started again at attempt 1")

            let missing = try await Self.run(
                "warren", ["dlx", "replay", "--queue", queue, "--message-id", "no-such-id"], url: url)
            #expect(missing.status != 0)
            let unknownQueue = try await Self.run("warren", ["dlx", "list", "--queue", "no.such.queue"], url: url)
            #expect(unknownQueue.status != 0)
            #expect(unknownQueue.errors.contains("'no.such.queue' is not a work queue"), "\(unknownQueue.errors)")
            #expect(!unknownQueue.errors.contains("NOT_FOUND"), "a person reads what to do, not the broker's reply")

            let refused = try await Self.run("warren", ["dlx", "purge", "--queue", queue], url: url)
            #expect(refused.status != 0)
            #expect(refused.errors.contains("--yes"))
            let purge = try await Self.run("warren", ["dlx", "purge", "--queue", queue, "--yes"], url: url)
            #expect(purge.status == 0)
            #expect(purge.output.contains("purged 3"))
            #expect(try await worker.deadLetters().isEmpty)

            let topology = try await Self.run("warren", ["topology", "--queue", queue, "--json"], url: url)
            #expect(topology.status == 0)
            #expect(topology.output.contains("\(queue).retry.1000ms"))
            #expect(topology.output.contains("\(queue).dead-letters"))
            #expect(topology.output.contains("\(queue).redelivered"))
        }
    }

    @Test func cliListsRunsPausesAndResumesTheSchedules() async throws {
        let url = try await TestBroker.url()
        let scope = TestBroker.uniqueName("cli").replacingOccurrences(of: "test.", with: "")
        let queue = TestBroker.uniqueName("cli-runs")
        let job = try RecurringJob("sweep", schedule: .cron("0 4 * * *", timeZone: "Asia/Tokyo"), queue: queue) {
            TestTick(at: $0)
        }
        let scheduler = try Scheduler(
            jobs: [job],
            transport: RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger()),
            scope: scope, campaignInterval: .milliseconds(200), logger: TestBroker.quietLogger())
        let none = try await Self.run("warren", ["schedules", "--scope", scope], url: url)
        #expect(none.status == 0 && none.output.contains("no scheduler of scope \(scope) has led"), "\(none.output)")
        try await whileRunning([{ try await scheduler.run() }]) {
            guard
                try await eventually(
                    timeout: .seconds(15),
                    {
                        try await Self.run("warren", ["schedules", "--scope", scope, "--json"], url: url).output
                            .contains("sweep")
                    })
            else { throw TestFailure("the CLI never listed the schedule") }
            let listed = try await Self.run("warren", ["schedules", "list", "--scope", scope, "--json"], url: url)
            let directory = try JSONDecoder().decode(ScheduleDirectory.self, from: Data(listed.output.utf8))
            #expect(directory.schedules.map(\.name) == ["sweep"] && directory.schedules.first?.timeZone == "Asia/Tokyo")
            let state = "\(scope).sweep"
            #expect(try await Self.run("warren", ["schedules", "pause", state], url: url).status == 0)
            let table = try await Self.run("warren", ["schedules", "--scope", scope], url: url)
            #expect(
                table.output.contains("0 4 * * * (Asia/Tokyo)") && table.output.contains("paused"), "\(table.output)")
            let trigger = try await Self.run(
                "warren", ["schedules", "trigger", state, "--request-id", "cli-check"], url: url)
            #expect(trigger.status == 0, "\(trigger)")
            guard
                try await eventually(
                    timeout: .seconds(10),
                    {
                        try await withConnection { connection in
                            try await connection.openChannel().queueStatus(queue).messageCount == 1
                        }
                    })
            else { throw TestFailure("no run now") }
            #expect(try await Self.run("warren", ["schedules", "resume", state], url: url).status == 0)
            let resumed = try await Self.run("warren", ["schedules", "--scope", scope, "--json"], url: url)
            #expect(resumed.output.contains("\"paused\" : false"), "\(resumed.output)")
            let unknown = try await Self.run("warren", ["schedules", "trigger", "\(scope).nothing"], url: url)
            #expect(unknown.status != 0 && unknown.errors.contains("no leader has prepared"), "\(unknown)")
        }
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            for name in [
                queue, "warren.schedule.\(scope).sweep.last", "warren.schedule.\(scope).sweep.paused",
                "warren.schedule.\(scope).sweep.trigger", ScheduleDirectory.queue(scope: scope),
                "warren.leader.scheduler.\(scope)",
            ] {
                _ = try await channel.queueDelete(name)
            }
        }
    }

    @Test func cliFailsFastWhenTheBrokerIsUnreachable() async throws {
        let clock = ContinuousClock()
        let started = clock.now
        let result = try await Self.run(
            "warren",
            [
                "publish", "--url", "amqp://guest:guest@127.0.0.1:1/?connection_timeout=2000", "--routing-key", "q",
                "--type", "t", "--body", "{}",
            ], url: nil)
        #expect(result.status != 0)
        #expect(result.errors.hasPrefix("warren: "))
        #expect(!result.errors.contains("guest:guest"), "no credentials in errors")
        // Its 2 s connection timeout, not a hang; 10 s leaves room for the process's start on a loaded machine.
        #expect(clock.now - started < .seconds(10))
    }

    @Test func localBrokerToolRunsANodePerDataDirectorySideBySide() async throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("warren-local-\(UUID().uuidString)")
        let directories = [base.appendingPathComponent("one").path, base.appendingPathComponent("two").path]
        defer { try? FileManager.default.removeItem(at: base) }
        let secret = "s3cret-\(UUID().uuidString)"
        try await withCleanups { cleanups in
            var urls: [String] = []
            for directory in directories {
                let started = try await bootingOneAtATime {
                    try await Self.run(
                        "warren-local-broker", ["start", "--data-directory", directory], url: nil,
                        environment: ["WARREN_TEST_SECRET": secret])
                }
                cleanups.add {
                    _ = try? await Self.run("warren-local-broker", ["stop", "--data-directory", directory], url: nil)
                }
                #expect(started.status == 0, "\(started.errors)")
                let url = started.output.split(separator: "\n").first { $0.hasPrefix("WARREN_AMQP_URL=") }?.dropFirst(
                    "WARREN_AMQP_URL=".count)
                urls.append(String(try #require(url)))
            }
            #expect(Set(urls).count == 2)
            // The state file keeps the node's own variables, none of the starting process's environment, for its owner only.
            for directory in directories {
                let state = "\(directory)/warren-local-broker.json"
                let text = try String(contentsOfFile: state, encoding: .utf8)
                #expect(!text.contains(secret) && text.contains("RABBITMQ_NODENAME"), "\(text.prefix(500))")
                let permissions = try FileManager.default.attributesOfItem(atPath: state)[.posixPermissions] as? Int
                #expect(permissions == 0o600, "\(String(describing: permissions))")
            }
            for url in urls {
                let connection = try await AMQPConnection.connect(
                    to: try AMQPEndpoint(uri: url), connectionName: "two-nodes")
                await connection.close()
            }
        }
    }

    @Test func ordersWorkerDrainsOnSIGTERMAndExitsZeroWithNothingLost() async throws {
        let url = try await TestBroker.url()
        // A queue of its own (orders-worker --queue), deleted at the end.
        let queue = TestBroker.uniqueName("orders")
        let connection = try await AMQPConnection.connect(to: AMQPEndpoint(uri: url))
        let channel = try await connection.openChannel()
        try await channel.enableConfirms()
        try await channel.queueDeclare(queue, durable: true, arguments: ["x-queue-type": "classic"])
        try await channel.queuePurge(queue)

        // Port 0: the system picks a free one, which the server's log line says (no port picked first, bound later).
        let worker = try LaunchedProcess(
            "orders-worker",
            [
                "--log-format", "json", "--grace-period", "10", "--http-port", "0", "--queue", queue,
                "--cleanup-interval", "0",
            ],
            environment: ["WARREN_AMQP_URL": url])
        defer { try? FileManager.default.removeItem(at: worker.output) }
        func servedPort() -> Int? {
            for line in worker.log.split(separator: "\n") {
                guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                    object["message"] as? String == "serving health and metrics"
                else { continue }
                return object["port"] as? Int ?? (object["port"] as? String).flatMap { Int($0) }
            }
            return nil
        }
        #expect(try await eventually(timeout: .seconds(30)) { servedPort() != nil }, "\(worker.log.suffix(2_000))")
        let httpPort = try #require(servedPort())
        #expect(try await eventually { (try? await connection.openChannel().queueStatus(queue).consumerCount) == 1 })
        let ready = await httpGet(port: httpPort, "/health/ready")
        #expect(ready.status == 200 && ready.queueStates[queue] == "consuming", "\(ready.body)")

        for (n, address) in ["a@slow.example", "b@example.com", "c@slow.example"].enumerated() {
            try await channel.publish(
                Array(#"{"userId":"\#(n)","email":"\#(address)"}"#.utf8), routingKey: queue, mandatory: true,
                properties: AMQPProperties(
                    contentType: "application/json", deliveryMode: .persistent, messageID: "sig-\(n)",
                    type: "email.welcome"))
        }
        // All three delivered to the worker (none ready in the queue), so their handlers run (2 s each).
        #expect(try await eventually { try await channel.queueStatus(queue).messageCount == 0 })
        // While the slow ones run (2 s each): the fast one counted, two in flight — read off the exposition's lines.
        /// The value of the sample of `metric` with every one of `labels` (`name="value"`), in `exposition`.
        func value(_ metric: String, _ labels: [String], in exposition: String) -> Double? {
            exposition.split(separator: "\n").first { $0.hasPrefix(metric + "{") && labels.allSatisfy($0.contains) }
                .flatMap { $0.split(separator: " ").last.flatMap { Double($0) } }
        }
        var exposition = ""
        let counted = try await eventually(timeout: .seconds(1.5), pollEvery: .milliseconds(20)) {
            exposition = await httpGet(port: httpPort, "/metrics").body
            return value("warren_messages_total", ["queue=\"\(queue)\"", "outcome=\"ack\""], in: exposition) == 1
                && value("warren_handlers_in_flight", ["queue=\"\(queue)\""], in: exposition) == 2
        }
        #expect(
            counted,
            "the fast one is counted and the slow ones are running: \(exposition.split(separator: "\n").filter { $0.contains(queue) })"
        )
        kill(worker.process.processIdentifier, SIGTERM)
        // The HTTP server stops last: while the handlers drain, readiness says so.
        #expect(
            try await eventually(timeout: .seconds(2)) { await httpGet(port: httpPort, "/health/ready").status == 503 })
        #expect(await worker.waitForExit() == 0)

        let lines = worker.log.split(separator: "\n")
        let settled = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["message"] as? String == "settled" }
        let outcomes = Dictionary(
            settled.map { ($0["message_id"] as? String ?? "", $0["outcome"] as? String ?? "") },
            uniquingKeysWith: { _, last in last })
        #expect(outcomes["sig-0"] == "ack", "an in-flight handler finishes within the grace period")
        #expect(outcomes["sig-2"] == "ack")
        #expect(outcomes["sig-1"] == "ack")
        for line in settled {
            for field in ["message_id", "type", "queue", "attempt", "outcome", "duration_ms"] {
                #expect(line[field] != nil, "settled line lacks \(field)")
            }
        }
        #expect(try await channel.queueStatus(queue).messageCount == 0, "nothing left behind, nothing lost")
        try await channel.queueDelete(queue)
        await connection.close()
    }

    /// A worker handling one message at a time from a fresh queue holding 5 messages, the first one running: each
    /// handler waits until `gate` is true (or until it is cancelled).
    private func slowWorkerWithBacklog(_ prefix: String, gate: AwaitableState<Bool>) async throws -> (
        RunningWorker, Recorder
    ) {
        let queue = TestBroker.uniqueName()
        let started = Recorder()
        let slow = HandlerRegistration(
            WelcomeEmail.self, queue: queue,
            options: HandlerOptions(prefetch: 10, maxConcurrentHandlers: 1, timeout: nil)
        ) { email, context in
            started.record(email, context)
            try await gate.wait { $0 }
        }
        let worker = try await RunningWorker.start(queue: queue, registrations: [slow])
        for n in 0..<5 { try await worker.publish(WelcomeEmail(userId: "\(n)", email: "\(prefix)\(n)@example.com")) }
        #expect(try await eventually { started.calls(for: "\(prefix)0@example.com").count == 1 })
        return (worker, started)
    }

    @Test func gracefulShutdownFinishesTheRunningHandlerAndRequeuesTheRest() async throws {
        let gate = AwaitableState(false)
        let (worker, started) = try await slowWorkerWithBacklog("g", gate: gate)
        // The shutdown begins while the first handler runs; it finishes after that.
        worker.worker.shutdown()
        gate.update { $0 = true }
        await worker.shutdownGracefully()
        let connection = try await worker.connect()
        let channel = try await connection.openChannel()
        #expect(
            try await eventually { try await channel.queueStatus(worker.queue).messageCount == 4 },
            "the running one was acked, 4 are back")
        #expect(
            (1..<5).allSatisfy { started.calls(for: "g\($0)@example.com").isEmpty },
            "nothing new starts after the shutdown")
        await connection.close()
    }

    @Test func cancellingTheWorkerRequeuesEverythingUnfinished() async throws {
        let (worker, started) = try await slowWorkerWithBacklog("w", gate: AwaitableState(false))
        await worker.stop()  // cancels the worker task: in-flight handler interrupted and requeued
        let connection = try await worker.connect()
        let channel = try await connection.openChannel()
        let handled = (0..<5).filter { !started.calls(for: "w\($0)@example.com").isEmpty }.count
        #expect(
            try await eventually { try await channel.queueStatus(worker.queue).messageCount == 5 },
            "all 5 are back (\(handled) were started)")
        await connection.close()
    }
}
