import Foundation
import Synchronization
import Testing
@_spi(WarrenTransport) import Warren
import WarrenAMQP
import WarrenLedger
import WarrenTestSupport

/// warren-dashboard and report-api, run as a user runs them, against the test broker and real stores.
@Suite(
    "warren-dashboard and report-api (broker)", .serialized, .tags(.broker, .postgres), .needs(.broker, .postgres),
    .deletesItsQueues)
struct DashboardProcessTests {
    static let token = "operator-\(UUID().uuidString)"
    static let readOnlyToken = "viewer-\(UUID().uuidString)"

    @Test(arguments: StoreKind.allCases)
    func theDashboardServesJobsBehindItsTokenAndFollowsAReplay(_ kind: StoreKind) async throws {
        let url = try await TestBroker.url()
        let queue = TestBroker.uniqueName()
        let exchange = TestBroker.uniqueName("events")
        let ledgerQueue = TestBroker.uniqueName("ledger")
        let sqlite = FileManager.default.temporaryDirectory.appendingPathComponent(
            "dashboard-\(UUID().uuidString).sqlite"
        ).path
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: sqlite + suffix) } }
        let store = kind == .sqlite ? "sqlite:\(sqlite)" : try await LocalPostgres.shared().newDatabaseURL("dashboard")
        let dashboard = try LaunchedProcess(
            "warren-dashboard",
            [
                "--port", "0", "--store", store, "--ledger-queue", ledgerQueue, "--events-exchange", exchange,
                "--log-level", "warning",
                "--queue", queue,
            ],
            environment: [
                "WARREN_AMQP_URL": url, "WARREN_DASHBOARD_TOKEN": Self.token,
                "WARREN_DASHBOARD_READONLY_TOKEN": Self.readOnlyToken,
            ])
        let port = try await dashboard.listeningPort()
        let auth = ["Authorization": "Bearer \(Self.token)"]
        #expect(try await eventually { await httpGet(port: port, "/health").json?["ingest"] as? String == "consuming" })

        // A worker and a publisher reporting their events to the dashboard's exchange.
        let transport = RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger())
        try await transport.start()
        let events = WarrenEventPublisher(
            transport: transport, options: EventOptions(exchange: exchange, flushInterval: .milliseconds(20)),
            logger: TestBroker.quietLogger())
        let fixed = Release()
        let followUps = Mutex<[String]>([])
        let registration = HandlerRegistration(WelcomeEmail.self, queue: queue) { email, context in
            if email.email.hasPrefix("bounce"), !fixed.isOpen { throw Reject("550 no such mailbox") }
            if email.email.hasPrefix("follow@") {
                let id = try await context.publish(
                    WelcomeEmail(userId: "f", email: "followed@example.com"), to: .queue(queue))
                followUps.withLock { $0.append(id) }
            }
        }
        var worker = try await RunningWorker.start(
            queue: queue, registrations: [registration], configuration: WorkerConfiguration(events: events))
        let publisher = WarrenPublisher(transport: transport, events: events)
        for id in ["ok-1", "ok-2", "ok-3", "bounce"] {
            try await publisher.publish(
                WelcomeEmail(userId: id, email: "\(id)@example.com"), to: .queue(queue), messageID: id)
        }
        func status(_ id: String) async -> String? {
            await httpGet(port: port, "/api/jobs/\(id)", headers: auth).json?["status"] as? String
        }
        #expect(try await eventually { await status("bounce") == "dead_lettered" })
        #expect(try await eventually { await status("ok-3") == "succeeded" })
        // Published by the CLI and by a handler: each job knows when it was published (Warren's header, and its event).
        let cli = try await HostAndCLITests.run(
            "warren",
            [
                "publish", "--routing-key", queue, "--type", WelcomeEmail.messageType, "--message-id", "cli-1",
                "--events-exchange", exchange, "--body", #"{"userId":"c","email":"cli@example.com"}"#,
            ], url: url)
        #expect(cli.status == 0, "\(cli)")
        try await publisher.publish(
            WelcomeEmail(userId: "f", email: "follow@example.com"), to: .queue(queue), messageID: "follow-1")
        #expect(try await eventually { await status("cli-1") == "succeeded" && !followUps.withLock { $0.isEmpty } })
        let followUp = try #require(followUps.withLock { $0.first })
        #expect(try await eventually { await status(followUp) == "succeeded" })
        for id in ["cli-1", followUp] {
            // Its `published` event and its settlement travel in different batches, committed in either order: the
            // publish time is there once both are.
            var job: [String: Any]?
            let published = try await eventually {
                job = await httpGet(port: port, "/api/jobs/\(id)", headers: auth).json
                return job?["published_at_ms"] as? Int64 != nil || job?["published_at_ms"] as? Int != nil
            }
            #expect(published, "\(id): \(String(describing: job))")
            let wait = (job?["timeline"] as? [[String: Any]])?.first?["queue_wait_ms"] as? Int
            #expect(
                wait != nil,
                "\(id): a wait from Warren's millisecond publish time (the AMQP timestamp alone gives none)")
        }
        // A foreign publisher's message, with only the AMQP timestamp (whole seconds, 3 s ago): its wait is kept apart and
        // said to be approximate, in the API and on the page.
        try await transport.publish(
            Array(#"{"userId":"x","email":"foreign@example.com"}"#.utf8), to: .queue(queue),
            properties: AMQPProperties(
                contentType: "application/json", messageID: "foreign-1", timestamp: Date(timeIntervalSinceNow: -3),
                type: WelcomeEmail.messageType))
        #expect(try await eventually { await status("foreign-1") == "succeeded" })
        let foreign =
            (await httpGet(port: port, "/api/jobs/foreign-1", headers: auth).json?["timeline"] as? [[String: Any]])?
            .first
        #expect(foreign?["queue_wait_ms"] == nil, "no precise-looking wait: \(String(describing: foreign))")
        #expect(
            (foreign?["queue_wait_approx_s"] as? Int).map { (2...30).contains($0) } == true,
            "\(String(describing: foreign))")
        let foreignPage = await httpGet(port: port, "/jobs/foreign-1", headers: auth)
        #expect(
            foreignPage.body.contains("≈ ")
                && foreignPage.body.contains("approximate: from the message's AMQP timestamp"),
            "\(foreignPage.body.suffix(3_000))")

        // Probes and the scrape, without a token: the store answers and the ledger consumes; its own metrics are there.
        let ready = await httpGet(port: port, "/health/ready")
        #expect(
            ready.status == 200 && ready.json?["store"] as? String == "ok"
                && ready.json?["ingest"] as? String == "consuming", "\(ready.body) \(dashboard.log.suffix(3_000))")
        #expect(await httpGet(port: port, "/health/live").status == 200)
        let metrics = await httpGet(port: port, "/metrics")
        #expect(
            metrics.status == 200 && metrics.body.contains("warren_ledger_lag_seconds{queue=\"\(ledgerQueue)\"}"),
            "\(metrics.body.prefix(2_000))")
        #expect(metrics.body.contains("warren_messages_total{") && metrics.body.contains("queue=\"\(ledgerQueue)\""))

        let job = await httpGet(port: port, "/api/jobs/bounce", headers: auth)
        #expect(
            job.status == 200 && job.json?["reason"] as? String == "rejected"
                && job.json?["message_id"] as? String == "bounce")
        let timeline = job.json?["timeline"] as? [[String: Any]] ?? []
        #expect(timeline.count == 1 && timeline.first?["outcome"] as? String == "dead-letter")
        #expect(await httpGet(port: port, "/api/jobs/nobody", headers: auth).status == 404)

        // Searches, page by page.
        let dead = await httpGet(port: port, "/api/jobs?queue=\(queue)&status=dead_lettered", headers: auth)
        #expect((dead.json?["jobs"] as? [[String: Any]])?.compactMap { $0["message_id"] as? String } == ["bounce"])
        var ids: [String] = []
        var next: String? = nil
        repeat {
            let page = await httpGet(
                port: port, "/api/jobs?queue=\(queue)&limit=3" + (next.map { "&after=\($0)" } ?? ""), headers: auth)
            #expect(page.status == 200)
            ids += (page.json?["jobs"] as? [[String: Any]] ?? []).compactMap { $0["message_id"] as? String }
            next = page.json?["next"] as? String
        } while next != nil && ids.count < 10
        #expect(
            Set(ids) == ["ok-1", "ok-2", "ok-3", "bounce", "cli-1", "follow-1", followUp, "foreign-1"]
                && ids.count == 8, "\(ids)")
        let failures = await httpGet(port: port, "/api/failures?queue=\(queue)", headers: auth)
        let groups = failures.json?["groups"] as? [[String: Any]] ?? []
        #expect(failures.status == 200 && groups.count == 1, "\(failures.body)")
        #expect(groups.first?["count"] as? Int == 1 && groups.first?["reason"] as? String == "rejected")
        #expect(
            groups.first?["error"] as? String == "Reject: 550 no such mailbox"
                && groups.first?["sample_message_id"] as? String == "bounce")
        // The ledger takes the dead letter off its queue and holds it: one record with the worker's event.
        func letters() async -> [[String: Any]] {
            (await httpGet(port: port, "/api/dead-letters/bounce", headers: auth).json?["dead_letters"]
                as? [[String: Any]]) ?? []
        }
        #expect(try await eventually { await letters().first?["held"] as? Bool == true })
        let all = await letters()
        let letter = all.first
        #expect(
            all.count == 1 && letter?["body"] as? String == #"{"userId":"bounce","email":"bounce@example.com"}"#,
            "\(all)")
        #expect(
            letter?["group_id"] as? String == groups.first?["group_id"] as? String
                && letter?["reason"] as? String == "rejected")
        let group = try #require(groups.first?["group_id"] as? String)
        let inGroup = await httpGet(port: port, "/api/dead-letters?group=\(group)", headers: auth)
        #expect(
            (inGroup.json?["dead_letters"] as? [[String: Any]])?.compactMap { $0["message_id"] as? String } == [
                "bounce"
            ])
        #expect(await httpGet(port: port, "/api/dead-letters/ok-1", headers: auth).status == 404)
        let bad = await httpGet(port: port, "/api/jobs?status=finished", headers: auth)
        #expect(bad.status == 400 && bad.json?["error"] as? String == "bad_request")

        // The queues page: what the broker says of the queue now (the bounce is in the ledger, not in its dead letters).
        let queues = await httpGet(port: port, "/api/queues", headers: auth)
        let overview = (queues.json?["queues"] as? [[String: Any]])?.first { $0["queue"] as? String == queue }
        let parts = overview?["queues"] as? [[String: Any]] ?? []
        func part(_ role: String) -> [String: Any]? { parts.first { $0["role"] as? String == role } }
        #expect(
            queues.status == 200 && part("work")?["consumers"] as? Int == 1 && part("work")?["messages"] as? Int == 0,
            "\(queues.body)")
        #expect(
            part("dead-letters")?["messages"] as? Int == 0
                && part("dead-letters")?["name"] as? String == "\(queue).dead-letters")
        let queuesPage = await httpGet(port: port, "/queues", headers: auth)
        #expect(queuesPage.status == 200 && queuesPage.body.contains(">\(queue)</a>"))

        // The door: no token, a wrong one, the read-only one; /health is open.
        #expect(await httpGet(port: port, "/api/jobs/bounce").status == 401)
        let wrong = await httpGet(port: port, "/api/jobs/bounce", headers: ["Authorization": "Bearer \(Self.token)x"])
        #expect(wrong.status == 401 && wrong.headers["www-authenticate"] == "Bearer")
        #expect(
            await httpGet(port: port, "/api/jobs/bounce", headers: ["Authorization": "Bearer \(Self.readOnlyToken)"])
                .status == 200)
        #expect(!dashboard.log.contains(Self.token), "the token is never logged")

        // A viewer's replay is refused, and written to the audit log.
        let refused = await httpRequest(
            "POST", port: port, "/api/dead-letters/bounce/replay",
            headers: ["Authorization": "Bearer \(Self.readOnlyToken)"])
        #expect(refused.status == 403 && refused.json?["error"] as? String == "forbidden", "\(refused.body)")
        let refusedPurge = await httpRequest(
            "POST", port: port, "/api/dead-letters/bounce/purge",
            headers: ["Authorization": "Bearer \(Self.readOnlyToken)"])
        #expect(refusedPurge.status == 403, "\(refusedPurge.body)")

        // A replay: the job shows `replayed` until a worker takes it again, then succeeds.
        await worker.stop()
        fixed.open()
        // `warren dlx` says where the dead letters went, and works through the dashboard.
        let listed = try await HostAndCLITests.run("warren", ["dlx", "list", "--queue", queue], url: url)
        #expect(
            listed.status == 0 && listed.output.contains("no dead letters")
                && listed.errors.contains("use --dashboard URL"), "\(listed)")
        let throughDashboard = ["--dashboard", "http://127.0.0.1:\(port)"]
        let viaAPI = try await HostAndCLITests.run(
            "warren", ["dlx", "list", "--queue", queue] + throughDashboard, url: url,
            environment: ["WARREN_DASHBOARD_TOKEN": Self.token])
        #expect(viaAPI.status == 0 && viaAPI.output.contains("bounce") && viaAPI.output.contains("held"), "\(viaAPI)")
        let replay = try await HostAndCLITests.run(
            "warren", ["dlx", "replay", "--queue", queue, "--message-id", "bounce"] + throughDashboard, url: url,
            environment: ["WARREN_DASHBOARD_TOKEN": Self.token])
        #expect(replay.status == 0 && replay.output.contains("replayed 1 of 1"), "\(replay)")
        #expect(try await eventually { await status("bounce") == "replayed" })
        worker = try await RunningWorker.start(
            queue: queue, registrations: [registration], configuration: WorkerConfiguration(events: events))
        #expect(try await eventually { await status("bounce") == "succeeded" })
        let replayed =
            await httpGet(port: port, "/api/jobs/bounce", headers: auth).json?["timeline"] as? [[String: Any]] ?? []
        #expect(replayed.compactMap { $0["outcome"] as? String } == ["dead-letter", "ack"])
        // Nothing left to replay: 404, and that too goes to the audit log.
        let again = await httpRequest("POST", port: port, "/api/dead-letters/bounce/replay", headers: auth)
        #expect(again.status == 404 && again.json?["error"] as? String == "not_replayed", "\(again.body)")
        let audit = (await httpGet(port: port, "/api/audit", headers: auth).json?["entries"] as? [[String: Any]]) ?? []
        #expect(
            audit.compactMap { $0["actor"] as? String } == ["token", "token", "readonly-token", "readonly-token"],
            "\(audit)")
        #expect(audit.compactMap { $0["action"] as? String } == ["replay", "replay", "purge", "replay"])
        #expect(
            audit[1]["outcome"] as? String == "started"
                && audit[1]["target"] as? String == "message_id=bounce queue=\(queue)")
        let operations =
            (await httpGet(port: port, "/api/operations", headers: auth).json?["operations"] as? [[String: Any]]) ?? []
        #expect(
            operations.count == 1 && operations.first?["status"] as? String == "done"
                && operations.first?["settled"] as? Int == 1)
        #expect(audit.compactMap { $0["outcome"] as? String }.last == "refused" && audit.first?["count"] as? Int == 0)
        #expect((audit.first?["outcome"] as? String)?.hasPrefix("failed: No dead letter") == true)

        await worker.stop()
        #expect(await dashboard.stop() == 0, "SIGTERM: it drains and exits 0")
        await transport.close()
        let connection = try await AMQPConnection.connect(to: AMQPEndpoint(uri: url))
        let channel = try await connection.openChannel()
        for name in [ledgerQueue, "\(ledgerQueue).redelivered"] { _ = try? await channel.queueDelete(name) }
        await connection.close()
    }

    @Test func aDashboardKilledDuringABulkReplayFinishesItAfterARestart() async throws {
        let url = try await TestBroker.url()
        let queue = TestBroker.uniqueName("bulk")
        let sqlite = FileManager.default.temporaryDirectory.appendingPathComponent("bulk-\(UUID().uuidString).sqlite")
            .path
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: sqlite + suffix) } }
        // 5,000 dead letters the ledger holds (the kill comes after 500), and their work queue.
        let count = 5_000
        let seeding = try await SQLiteLedgerStore(path: sqlite)
        try await seeding.migrate()
        let base = Int64(Date().timeIntervalSince1970 * 1000) - 600_000
        for start in stride(from: 0, to: count, by: 1_000) {
            try await seeding.take(
                (start..<start + 1_000).map { index in
                    IngestedDeadLetter(
                        message: deadLetterMessage("bulk-\(index)", queue: queue, failedAtMs: base + Int64(index)),
                        queue: queue, receivedAtMs: base)
                })
        }
        try await seeding.close()
        let transport = RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger())
        try await transport.start()
        try await transport.prepare(queue: queue, delays: [])
        await transport.close()

        func startDashboard() async throws -> (LaunchedProcess, Int) {
            let dashboard = try LaunchedProcess(
                "warren-dashboard",
                [
                    "--port", "0", "--store", "sqlite:\(sqlite)", "--no-ingest", "--url", url, "--operation-lease",
                    "1s", "--log-level", "error",
                ],
                environment: ["WARREN_DASHBOARD_TOKEN": Self.token])
            return (dashboard, try await dashboard.listeningPort())
        }
        let auth = ["Authorization": "Bearer \(Self.token)"]
        var (dashboard, port) = try await startDashboard()
        let started = await httpRequest(
            "POST", port: port, "/api/operations", headers: auth.merging(["Content-Type": "application/json"]) { $1 },
            body: #"{"action": "replay", "filter": {"queue": "\#(queue)"}}"#)
        #expect(started.status == 202 && started.json?["total"] as? Int == count, "\(started.body)")
        let id = try #require(started.json?["id"] as? String)
        func operation() async -> [String: Any]? {
            await httpGet(port: port, "/api/operations/\(id)", headers: auth).json
        }

        // Killed (SIGKILL) once it has replayed a few batches.
        #expect(
            try await eventually(timeout: .seconds(60), pollEvery: .milliseconds(10)) {
                (await operation()?["settled"] as? Int ?? 0) >= 500
            })
        kill(dashboard.process.processIdentifier, SIGKILL)
        _ = await dashboard.stop()
        let reader = try await SQLiteLedgerStore(path: sqlite)
        let atKill = try #require(try await reader.operation(id: id))
        #expect(atKill.status == .running && atKill.settled < count, "killed midway (\(atKill.settled) of \(count))")

        // Started again, it takes the operation over once its lease ran out, and finishes it.
        (dashboard, port) = try await startDashboard()
        #expect(
            try await eventually(timeout: .seconds(120)) { await operation()?["status"] as? String == "done" },
            "\(dashboard.log)")
        #expect(await operation()?["settled"] as? Int == count)
        #expect(try await reader.countHeldDeadLetters(matching: DeadLetterFilter(queue: queue)) == 0)
        // Every dead letter's copy is in the work queue; at most the batch whose confirms had come back when the
        // process died (100) went out twice.
        let connection = try await AMQPConnection.connect(to: AMQPEndpoint(uri: url))
        let channel = try await connection.openChannel()
        let copies = try await channel.queueStatus(queue).messageCount
        #expect(copies >= count && copies <= count + 100, "\(copies) copies of \(count) dead letters")
        for name in [queue, "\(queue).dead-letters"] { _ = try? await channel.queueDelete(name) }
        await connection.close()
        try await reader.close()
        #expect(await dashboard.stop() == 0)
    }

    @Test func aLedgerKilledMidwayLosesNothingAndRecordsNothingTwice() async throws {
        let url = try await TestBroker.url()
        let exchange = TestBroker.uniqueName("events")
        let ledgerQueue = TestBroker.uniqueName("ledger")
        let sqlite = FileManager.default.temporaryDirectory.appendingPathComponent("killed-\(UUID().uuidString).sqlite")
            .path
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: sqlite + suffix) } }
        func startDashboard() async throws -> LaunchedProcess {
            let dashboard = try LaunchedProcess(
                "warren-dashboard",
                [
                    "--port", "0", "--store", "sqlite:\(sqlite)", "--ledger-queue", ledgerQueue, "--events-exchange",
                    exchange,
                    "--log-level", "error",
                ],
                environment: ["WARREN_AMQP_URL": url, "WARREN_DASHBOARD_TOKEN": Self.token])
            let port = try await dashboard.listeningPort()
            #expect(
                try await eventually { await httpGet(port: port, "/health").json?["ingest"] as? String == "consuming" })
            return dashboard
        }
        var dashboard = try await startDashboard()

        // 60,000 events (20,000 jobs: published, started, ack) in batches of 200, as workers send them.
        let connection = try await AMQPConnection.connect(to: AMQPEndpoint(uri: url))
        let channel = try await connection.openChannel()
        try await channel.enableConfirms()
        var events: [WarrenEvent] = []
        let now = Int64(Date().timeIntervalSince1970 * 1000)  // recent: the ledger's retention keeps them
        for job in 0..<20_000 {
            let id = "killed-\(job)"
            let at = now - 20_000 + Int64(job)
            events += [
                WarrenEvent(event: .published, messageID: id, type: "t", queue: "q", atMs: at),
                WarrenEvent(event: .started, messageID: id, type: "t", queue: "q", attempt: 1, atMs: at + 1),
                WarrenEvent(event: .ack, messageID: id, type: "t", queue: "q", attempt: 1, atMs: at + 2, durationMs: 1),
            ]
        }
        let batches = stride(from: 0, to: events.count, by: 200).map { start in
            AMQPOutboundMessage(
                body: WarrenEvent.encodeBatch(events[start..<min(start + 200, events.count)]), exchange: exchange,
                routingKey: "q.batch",
                properties: AMQPProperties(
                    contentType: "application/json", deliveryMode: .persistent, type: "warren.events"))
        }
        for result in await channel.publish(contentsOf: batches) { try result.get() }

        // Killed while it records: some batches committed and acked, some committed and not acked, some neither.
        let reader = try await SQLiteLedgerStore(path: sqlite)
        #expect(
            try await eventually(timeout: .seconds(60), pollEvery: .milliseconds(5)) {
                try await reader.eventCount() > 0
            })
        kill(dashboard.process.processIdentifier, SIGKILL)
        let atKill = try await reader.eventCount()
        _ = await dashboard.stop()
        #expect(atKill < events.count, "killed midway (\(atKill) of \(events.count) recorded)")

        dashboard = try await startDashboard()
        let caughtUp = try await eventually(timeout: .seconds(120)) { try await reader.eventCount() >= events.count }
        let recorded = try await reader.eventCount()
        #expect(caughtUp, "\(recorded) of \(events.count) recorded after the restart; \(dashboard.log)")
        // Redelivered batches already recorded go round once more (a copy at the queue's tail): wait until the queue is
        // empty while the ledger runs. Stopped gracefully, it settles what it holds, and what it did not ack goes back
        // to its queue: empty queues after the stop mean every batch was taken, and the count cannot move any more.
        #expect(
            try await eventually(timeout: .seconds(60)) { try await channel.queueStatus(ledgerQueue).messageCount == 0 }
        )
        #expect(await dashboard.stop() == 0)
        // The queue requeues what a consumer left unacked when it drops that consumer: wait for that, then look.
        #expect(try await eventually { try await channel.queueStatus(ledgerQueue).consumerCount == 0 })
        #expect(try await channel.queueStatus(ledgerQueue).messageCount == 0, "every batch acked")
        #expect(try await channel.queueStatus("\(ledgerQueue).redelivered").messageCount == 0)
        #expect(
            try await reader.eventCount() == events.count,
            "every event once: the redelivered batches were not recorded twice")
        var succeeded = 0
        var query = JobQuery(type: "t", state: .succeeded, limit: 500)
        repeat {
            let page = try await reader.jobs(matching: query)
            succeeded += page.jobs.count
            query.after = page.next
        } while query.after != nil
        #expect(succeeded == 20_000)
        let job = try #require(try await reader.job(messageID: "killed-7"))
        #expect(job.timeline.count == 1 && job.timeline[0].outcome == "ack")
        try await reader.close()
        for name in [ledgerQueue, "\(ledgerQueue).redelivered"] { _ = try? await channel.queueDelete(name) }
        await connection.close()
    }

    @Test func theDashboardRefusesToServeWithoutAToken() async throws {
        // It exits by itself, at once: status 1 and one line saying what to set.
        let dashboard = try LaunchedProcess(
            "warren-dashboard", ["--port", "0", "--no-ingest"], environment: ["WARREN_DASHBOARD_TOKEN": ""])
        #expect(await dashboard.waitForExit() == 1)
        #expect(
            dashboard.log.split(separator: "\n").count == 1
                && dashboard.log.contains("set WARREN_DASHBOARD_TOKEN or give a users file"), "\(dashboard.log)")
        // A token anyone could guess: one line saying so, exit 1.
        let short = try LaunchedProcess(
            "warren-dashboard",
            ["--port", "0", "--no-ingest", "--store", "sqlite:/tmp/unused-\(UUID().uuidString).sqlite"],
            environment: ["WARREN_DASHBOARD_TOKEN": "demo-0123456789abcdef"])
        #expect(await short.waitForExit() == 1)
        let lines = short.log.split(separator: "\n")
        #expect(lines.count == 1 && lines.first?.contains("at least 32") == true, "\(short.log)")
    }

    @Test func theDashboardWarnsWhenServingBeyondThisMachineWithoutSecureCookies() async throws {
        let sqlite = "/tmp/dashboard-\(UUID().uuidString).sqlite"
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: sqlite + suffix) } }
        let dashboard = try LaunchedProcess(
            "warren-dashboard", ["--port", "0", "--host", "0.0.0.0", "--no-ingest", "--store", "sqlite:\(sqlite)"],
            environment: ["WARREN_DASHBOARD_TOKEN": Self.token])
        _ = try await dashboard.listeningPort()
        #expect(dashboard.log.contains("without --secure-cookies"), "\(dashboard.log)")
        #expect(await dashboard.stop() == 0)
        // And the CLI, sending the token in clear to another host.
        let cli = try LaunchedProcess(
            "warren", ["dlx", "list", "--queue", "q", "--dashboard", "http://dashboard.invalid:8089"],
            environment: ["WARREN_DASHBOARD_TOKEN": Self.token])
        _ = await cli.waitForExit()
        #expect(cli.log.contains("over plain http"), "\(cli.log)")
        #expect(!cli.log.contains(Self.token), "the token itself is never printed")
    }

    @Test func reportAPIAnswers202ThenSeeOtherToTheFileOr500WithTheReason() async throws {
        let url = try await TestBroker.url()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("reports-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        // The API alone, before any worker has run: a request is queued all the same, and pending.
        let alone = try LaunchedProcess(
            "report-api",
            [
                "--role", "api", "--port", "0", "--reports-directory", directory.path, "--ledger",
                "sqlite:\(directory.path)/ledger.sqlite",
                "--log-level", "warning",
            ],
            environment: ["WARREN_AMQP_URL": url])
        let alonePort = try await alone.listeningPort()
        let queued = await httpRequest("POST", port: alonePort, "/reports", body: #"{"month": "2026-08"}"#)
        #expect(queued.status == 202, "\(queued.body)")
        #expect(
            await httpGet(port: alonePort, queued.headers["location"] ?? "/").json?["status"] as? String == "pending")
        #expect(await alone.stop() == 0)

        let api = try LaunchedProcess(
            "report-api",
            [
                "--port", "0", "--work-seconds", "1.5", "--reports-directory", directory.path, "--ledger",
                "sqlite:\(directory.path)/ledger.sqlite", "--log-level", "warning",
            ],
            environment: ["WARREN_AMQP_URL": url])
        let port = try await api.listeningPort()

        let accepted = await httpRequest("POST", port: port, "/reports", body: #"{"month": "2026-09"}"#)
        #expect(accepted.status == 202)
        let location = try #require(accepted.headers["location"])
        #expect(location.hasPrefix("/reports/") && accepted.json?["status_url"] as? String == location)

        // 202 while it is made (a second and a half), then 303 to the file.
        var seen: [String] = []
        var answer = await httpGet(port: port, location)
        let deadline = ContinuousClock.now + .seconds(60)
        while answer.status == 202, ContinuousClock.now < deadline {
            if let status = answer.json?["status"] as? String, seen.last != status { seen.append(status) }
            try await Task.sleep(for: .milliseconds(100))
            answer = await httpGet(port: port, location)
        }
        #expect(answer.status == 303 && answer.headers["location"] == "\(location)/file", "\(answer)")
        #expect(seen.contains("running"), "the status said what was happening: \(seen)")
        #expect(Set(seen).isSubset(of: ["pending", "running"]))
        let file = await httpGet(port: port, "\(location)/file")
        let lines = file.body.split(separator: "\n")
        #expect(file.status == 200 && file.headers["content-type"]?.hasPrefix("text/csv") == true)
        #expect(lines.first == "date,orders,revenue_cents" && lines.count == 31 && lines[1].hasPrefix("2026-09-01,"))

        // A report that can never be made: 500 with the reason, once the ledger has the dead letter.
        let doomed = await httpRequest("POST", port: port, "/reports", body: #"{"month": "1999-12"}"#)
        let doomedLocation = try #require(doomed.headers["location"])
        #expect(try await eventually { await httpGet(port: port, doomedLocation).status == 500 })
        let failed = await httpGet(port: port, doomedLocation)
        #expect(failed.json?["status"] as? String == "dead_lettered" && failed.json?["reason"] as? String == "rejected")
        #expect((failed.json?["error"] as? String)?.contains("before 2000-01") == true)

        // Bad requests and unknown reports.
        #expect(await httpRequest("POST", port: port, "/reports", body: "not json").status == 400)
        #expect(await httpRequest("POST", port: port, "/reports", body: #"{"month": "2026-13"}"#).status == 400)
        #expect(await httpGet(port: port, "/reports/\(UUID().uuidString.lowercased())").status == 404)
        #expect(await httpGet(port: port, "/reports/..%2F..%2Fetc%2Fpasswd/file").status == 404)
        // The same hostile table as the dashboard's, on every parameter report-api reads.
        for value in DashboardHardeningBrokerTests.hostile + ["2026-10"] {
            let json = String(decoding: try JSONSerialization.data(withJSONObject: ["month": value]), as: UTF8.self)
            let answer = await RawHTTP.request(port: port, "POST", "/reports", body: json)
            #expect(
                [400, 413].contains(answer.status) || (value == "2026-10" && answer.status == 202),
                "month \(value.prefix(40)): \(answer.status)")
        }
        for body in [
            "", "[]", "null", String(repeating: "[", count: 5_000), String(repeating: "x", count: 5_000),
            #"{"month": 202610}"#,
        ] {
            let answer = await RawHTTP.request(port: port, "POST", "/reports", body: body)
            #expect([400, 413].contains(answer.status), "\(body.prefix(40)): \(answer.status)")
        }
        for segment in DashboardHardeningBrokerTests.hostile.filter({ !$0.isEmpty }).map(
            DashboardHardeningBrokerTests.encoded)
            + DashboardHardeningBrokerTests.rawEscapes
        {
            for target in ["/reports/\(segment)", "/reports/\(segment)/file"] {
                let answer = await RawHTTP.request(port: port, "GET", target)
                #expect([400, 404, 414, 431].contains(answer.status), "\(target.prefix(60)): \(answer.status)")
            }
        }
        // A report id that is a path, published straight to the queue (the HTTP handler never made it): dead-lettered
        // with the reason, and nothing written outside the reports' folder.
        let outside = directory.deletingLastPathComponent().appendingPathComponent("prices-\(UUID().uuidString)")
        let relative = "../" + outside.lastPathComponent
        let connection = try await AMQPConnection.connect(to: AMQPEndpoint(uri: url))
        let channel = try await connection.openChannel()
        try await channel.enableConfirms()
        try await channel.publish(
            Array(#"{"reportID": "\#(relative)", "month": "2026-10"}"#.utf8), routingKey: "reports", mandatory: true,
            properties: AMQPProperties(
                contentType: "application/json", messageID: "path-\(UUID().uuidString)", type: "report.requested"))
        let transport = RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger())
        var letters: [DeadLetter] = []
        #expect(
            try await eventually {
                letters = try await transport.deadLetters(of: "reports").filter {
                    $0.messageID?.hasPrefix("path-") == true
                }
                return !letters.isEmpty
            })
        #expect(
            letters.first?.reason?.detail.contains("not a report id") == true,
            "\(String(describing: letters.first?.reason))")
        #expect(!FileManager.default.fileExists(atPath: outside.path + ".csv"))
        _ = try? await channel.queuePurge(WarrenTopology(queue: "reports").deadLetterQueue)
        await transport.close()
        await connection.close()
        #expect(await api.stop() == 0)
    }
}
