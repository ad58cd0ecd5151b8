import Foundation
import Testing
@_spi(WarrenTransport) import Warren
import WarrenAMQP
import WarrenLedger
import WarrenTestSupport

/// The dashboard in Debian's headless Chromium: what a person sees, signs in to and clicks. Screenshots go to
/// `WARREN_SCREENSHOTS` when it names a folder (`make screenshots` points it at docs/images).
@Suite(
    "The dashboard in a real browser", .serialized, .tags(.browser, .broker), .needs(.browser, .broker),
    .deletesItsQueues,
    .needsTool(HeadlessChromium.isInstalled, "Chromium and chromedriver"))
struct DashboardBrowserTests {
    static let screenshots = ProcessInfo.processInfo.environment["WARREN_SCREENSHOTS"]

    /// The suite runs without Chromium only under CI (``needsTool(_:_:)``), where this then fails the test.
    func browser() async throws -> HeadlessChromium {
        guard HeadlessChromium.isInstalled else {
            throw TestFailure("chromium and chromedriver are missing (make deps installs them)")
        }
        return try await HeadlessChromium()
    }

    /// Runs `body` in a new browser window, then closes the window and stops the browser and the dashboard, whether
    /// `body` threw or not.
    func inWindow(
        _ chromium: HeadlessChromium, _ dashboard: SeededDashboard, _ body: (WebDriverSession) async throws -> Void
    ) async throws {
        let window = try await chromium.newSession()
        var failure: (any Error)?
        do { try await body(window) } catch { failure = error }
        await window.close()
        await chromium.stop()
        await dashboard.stop()
        if let failure { throw failure }
    }

    func snap(_ window: WebDriverSession, _ name: String) async throws {
        guard let folder = Self.screenshots else { return }
        try await window.screenshot(to: "\(folder)/dashboard-\(name).png")
    }

    func signIn(
        _ window: WebDriverSession, _ dashboard: SeededDashboard, user: String, password: String,
        from path: String = "/jobs"
    ) async throws {
        try await window.go(to: dashboard.address + path)
        #expect(try await window.currentURL().contains("/sign-in"), "an anonymous visit is sent to the sign-in form")
        try await window.find("#user").type(user)
        try await window.find("#password").type(password)
        try await window.find("button[type=submit]").click()
        try await window.waitForURL(containing: password == "wrong" ? "/sign-in" : path)
    }

    @Test func anOperatorSeesTheSchedulesPausesOneAndRunsItNow() async throws {
        let chromium = try await browser()
        let url = try await TestBroker.url()
        let scope = TestBroker.uniqueName("browser").replacingOccurrences(of: "test.", with: "")
        let queue = TestBroker.uniqueName("nightly-runs")
        let jobs = [
            try RecurringJob(
                "nightly-report", schedule: .cron("30 2 * * *", timeZone: "Europe/Berlin"), queue: queue
            ) { TestTick(at: $0) },
            try RecurringJob("cart-cleanup", schedule: .every(.seconds(3600)), queue: queue) { TestTick(at: $0) },
        ]
        let scheduler = try Scheduler(
            jobs: jobs,
            transport: RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger()),
            scope: scope, campaignInterval: .milliseconds(200), logger: TestBroker.quietLogger())
        let dashboard = try await SeededDashboard.start(brokerURL: url, schedulerScope: scope)
        try await whileRunning([{ try await scheduler.run() }]) {
            try await inWindow(chromium, dashboard) { window in
                try await signIn(
                    window, dashboard, user: "ada", password: SeededDashboard.operatorPassword, from: "/schedules")
                try await window.waitUntil("the leader's directory") {
                    try await window.go(to: dashboard.address + "/schedules")
                    return try await window.findAll("tbody tr").count == 2
                }
                let text = try await window.visibleText()
                #expect(
                    text.contains("30 2 * * *") && text.contains("Europe/Berlin") && text.contains("every 1 h"),
                    "\(text)")
                #expect(text.contains(ProcessInfo.processInfo.hostName), "the leader's host")
                try await snap(window, "schedules")

                // Pause the nightly report, then run it now anyway.
                try await window.find("form[action='/schedules/\(scope).nightly-report/pause'] button").click()
                try await window.waitUntil("paused") {
                    try await window.find("form[action='/schedules/\(scope).nightly-report/resume'] button").text()
                        == "Resume"
                }
                try await window.find("form[action='/schedules/\(scope).nightly-report/trigger'] button").click()
                guard
                    try await eventually(
                        timeout: .seconds(10),
                        {
                            try await withConnection { try await $0.openChannel().queueStatus(queue).messageCount == 1 }
                        })
                else { throw TestFailure("no run now") }
                try await window.go(to: dashboard.address + "/audit")
                let audit = try await window.visibleText()
                #expect(
                    audit.contains("pause") && audit.contains("trigger")
                        && audit.contains("schedule \(scope).nightly-report"), "\(audit)")
            }
        }
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            for name in ["nightly-report", "cart-cleanup"] {
                for suffix in ["last", "paused", "trigger"] {
                    _ = try? await channel.queueDelete("warren.schedule.\(scope).\(name).\(suffix)")
                }
            }
            for name in [queue, ScheduleDirectory.queue(scope: scope), "warren.leader.scheduler.\(scope)"] {
                _ = try? await channel.queueDelete(name)
            }
        }
    }

    @Test func anOperatorSignsInSearchesAndOpensAJobAFailureGroupAndADeadLetter() async throws {
        let chromium = try await browser()
        // The broker holds the seeded "emails" queue with two retry delays and three messages waiting.
        let url = try await TestBroker.url()
        let transport = RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger())
        try await transport.start()
        try await transport.prepare(queue: "emails", delays: [.seconds(30), .seconds(300)])
        for index in 1...3 {
            try await transport.publish(
                Array("{}".utf8), to: .queue("emails"), properties: AMQPProperties(messageID: "waiting-\(index)"))
        }
        let dashboard = try await SeededDashboard.start(brokerURL: url)
        defer {
            Task {
                let connection = try await AMQPConnection.connect(to: AMQPEndpoint(uri: url))
                let channel = try await connection.openChannel()
                for name in [
                    "emails", "emails.retry.30000ms", "emails.retry.300000ms", "emails.redelivered",
                    "emails.dead-letters", "emails.topology",
                ] {
                    _ = try? await channel.queueDelete(name)
                }
                await connection.close()
                await transport.close()
            }
        }
        try await inWindow(chromium, dashboard) { window in
            try await window.go(to: dashboard.address + "/sign-in")
            try await snap(window, "sign-in")
            try await signIn(window, dashboard, user: "ada", password: "wrong")
            try await window.waitUntil("the refusal") { try await window.visibleText().contains("did not match") }

            try await signIn(window, dashboard, user: "ada", password: SeededDashboard.operatorPassword)
            #expect(try await window.currentURL() == dashboard.address + "/jobs", "back where the visit began")
            #expect(try await window.find(".who").text() == "ada (operator)")
            #expect(try await window.findAll("tbody tr").count == 36, "every seeded job on the first page")
            try await snap(window, "jobs")

            // Search: the dead-lettered welcome emails.
            try await window.find("#type").type("email.welcome")
            _ = try await window.evaluate("document.querySelector('#status').value = 'dead_lettered'")
            try await window.find("form.search button").click()
            try await window.waitForURL(containing: "status=dead_lettered")
            let rows = try await window.findAll("tbody tr")
            #expect(rows.count == 3)
            for row in rows { #expect(try await row.text().contains("dead lettered")) }
            #expect(try await window.currentURL().contains("status=dead_lettered"))

            // A job and its attempts.
            try await window.find("tbody tr a").click()
            try await window.waitForURL(containing: "/jobs/bounce-")
            #expect(try await window.find("h1").text().hasPrefix("Job bounce-"))
            let attempt = try await window.find("tbody tr").text()
            #expect(
                attempt.contains("dead-letter") && attempt.contains("550 mailbox") && attempt.contains("40 ms"),
                "\(attempt)")
            #expect(try await window.visibleText().contains("4bf92f3577b34da6a3ce929d0e0e473"), "the trace id")
            try await snap(window, "job")

            // The failures, grouped: the three bounces are one group whatever their addresses.
            try await window.find("nav a[href='/failures']").click()
            try await window.waitForURL(containing: "/failures")
            let groups = try await window.findAll("tbody tr")
            #expect(groups.count == 3, "bounces, the hostile one, the binary one")
            let bounceGroup = try await window.find("tbody tr:nth-child(3)").text()
            #expect(
                bounceGroup.hasPrefix("3 ") && bounceGroup.contains("Reject: 550 mailbox #@example.com does not exist"),
                "\(bounceGroup)")
            try await snap(window, "failures")
            try await window.find("tbody tr:nth-child(3) td a").click()
            try await window.waitForURL(containing: "/failures/")
            #expect(try await window.find("h1").text().hasPrefix("Failure group"))
            #expect(try await window.findAll("tbody tr").count == 3)
            #expect(
                try await window.find("dl.facts").text().contains("Reject: 550 mailbox #@example.com does not exist"))
            try await snap(window, "failure-group")

            // A dead letter: headers and body.
            try await window.find("tbody tr a").click()
            try await window.waitForURL(containing: "/dead-letters/bounce-")
            #expect(try await window.find("pre.body").text().contains(#""email":"#))
            try await snap(window, "dead-letter")

            // Binary bodies as hex.
            try await window.go(to: dashboard.address + "/dead-letters/binary-1")
            let hex = try await window.find("pre.hex").text()
            #expect(
                hex.hasPrefix("00000000  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f  ................"),
                "\(hex.prefix(120))")
            #expect(hex.contains("000000f0  f0 f1 f2"))

            // The queues, as the broker reports them.
            try await window.find("nav a[href='/queues']").click()
            try await window.waitForURL(containing: "/queues")
            let emails = try await window.find("tbody tr:has(a[href='/jobs?queue=emails'])").text()
            #expect(emails.hasPrefix("emails 3 ") && emails.contains("0 in 2 (30 s, 5 min)"), "\(emails)")
            #expect(try await window.find("tbody tr:has(a[href='/jobs?queue=billing'])").text().contains("missing"))
            try await snap(window, "queues")

            // Signing out ends the session: the next visit asks again.
            try await window.find("header button.link").click()
            try await window.waitForURL(containing: "/sign-in")
            try await window.go(to: dashboard.address + "/jobs")
            #expect(try await window.currentURL().contains("/sign-in"))
        }
    }

    @Test func anOperatorReplaysADeadLetterAndPurgesAnotherAViewerIsRefused() async throws {
        let chromium = try await browser()
        let scene = try await IngestingScene.start(queuePrefix: "replayed") { _ in "550 mailbox unavailable" }
        let (dashboard, queue, fixed) = (scene.dashboard, scene.queue, scene.fixed)
        func held(_ id: String) async -> Bool {
            (await scene.api("/api/dead-letters/\(id)").json?["dead_letters"] as? [[String: Any]])?.first?["held"]
                as? Bool == true
        }
        func status(_ id: String = "replay-me") async -> String? { await scene.status(id) }
        var failure: (any Error)?
        do {
            try await inWindow(chromium, dashboard) { window in
                try await scene.publish("replay-me")
                #expect(try await eventually { await status() == "dead_lettered" })
                try await scene.publish("purge-me")
                #expect(try await eventually { await status("purge-me") == "dead_lettered" })
                #expect(
                    try await eventually {
                        let replay = await held("replay-me")
                        let purge = await held("purge-me")
                        return replay && purge
                    }, "taken into the ledger")

                // A viewer sees no replay button, gets a 403 for the confirmation page, and a 403 for a forged POST.
                try await signIn(
                    window, dashboard, user: "grace", password: SeededDashboard.viewerPassword,
                    from: "/dead-letters/replay-me")
                #expect(try await window.findAll("a.button").isEmpty)
                try await window.go(to: dashboard.address + "/dead-letters/replay-me/replay")
                #expect(try await window.find("h1").text() == "Forbidden")
                try await window.go(to: dashboard.address + "/jobs")
                // The page's Content-Security-Policy forbids fetch() even to the test's script: a form it builds posts instead.
                _ = try await window.evaluate(
                    """
                    const form = document.createElement('form');
                    form.method = 'post';
                    form.action = '/dead-letters/replay-me/replay';
                    const token = document.querySelector('input[name=csrf_token]').cloneNode();
                    form.appendChild(token);
                    document.body.appendChild(form);
                    form.submit();
                    """)
                try await window.waitUntil("the refusal of a viewer's replay (with the session's own CSRF token)") {
                    try await window.evaluate("return document.title") as? String == "Forbidden · Warren"
                }
                #expect(try await window.visibleText().contains("Only an operator may replay"))
                try await window.go(to: dashboard.address + "/jobs")
                try await window.find("header button.link").click()
                try await window.waitForURL(containing: "/sign-in")
                #expect(await status() == "dead_lettered")

                // An operator replays it: a confirmation, then the job's page, where it goes on to succeed.
                fixed.open()
                try await signIn(
                    window, dashboard, user: "ada", password: SeededDashboard.operatorPassword,
                    from: "/dead-letters/replay-me")
                #expect(try await window.find("dl.facts").text().contains("in the ledger"))
                try await window.find("a.button").click()
                try await window.waitForURL(containing: "/dead-letters/replay-me/replay")
                try await snap(window, "replay")
                try await window.find("main form button[type=submit]").click()
                try await window.waitForURL(containing: "/jobs/replay-me")
                try await window.waitUntil("the replayed job to succeed", timeout: .seconds(30)) {
                    try await window.go(to: dashboard.address + "/jobs/replay-me")
                    return try await window.find("dl.facts .badge").text() == "succeeded"
                }
                let outcomes =
                    try await window.evaluate(
                        "return Array.from(document.querySelectorAll('tbody .badge')).map(b => b.textContent)")
                    as? [String]
                #expect(outcomes == ["dead-letter", "ack"], "the dead-lettered attempt, then the replay's")
                #expect(
                    try await window.findAll("main a[href='/dead-letters/replay-me']").count == 1,
                    "a replayed job still links to its dead letter")

                // The other one is purged: deleted from the dead letters for good, its job marked purged.
                try await window.go(to: dashboard.address + "/dead-letters/purge-me")
                try await window.find("a.button.danger").click()
                try await window.waitForURL(containing: "/dead-letters/purge-me/purge")
                try await window.find("main form button[type=submit]").click()
                try await window.waitForURL(containing: "/jobs/purge-me")
                try await window.waitUntil("the purged job", timeout: .seconds(30)) {
                    try await window.go(to: dashboard.address + "/jobs/purge-me")
                    return try await window.find("dl.facts .badge").text() == "purged"
                }
                let queues = await httpGet(
                    port: dashboard.port, "/api/queues", headers: ["Authorization": "Bearer \(SeededDashboard.token)"])
                let parts =
                    ((queues.json?["queues"] as? [[String: Any]])?.first { $0["queue"] as? String == queue }?["queues"]
                        as? [[String: Any]]) ?? []
                #expect(
                    parts.first { $0["role"] as? String == "dead-letters" }?["messages"] as? Int == 0,
                    "nothing left in the dead letters")

                // The audit log: the operator's purge and replay, and the viewer's refusal.
                try await window.find("nav a[href='/audit']").click()
                try await window.waitForURL(containing: "/audit")
                let entries = try await window.findAll("tbody tr")
                #expect(entries.count == 3)
                let purge = try await entries[0].text()
                let replay = try await entries[1].text()
                let refusal = try await entries[2].text()
                #expect(purge.contains("ada (operator) purge message purge-me from \(queue) 1 done"), "\(purge)")
                #expect(replay.contains("ada (operator) replay message replay-me from \(queue) 1 done"), "\(replay)")
                #expect(
                    refusal.contains("grace (viewer) replay message replay-me from \(queue) 0 refused"), "\(refusal)")
                try await snap(window, "audit")
            }
        } catch { failure = error }
        try await scene.finish()
        if let failure { throw failure }
    }

    @Test func anOperatorReplaysAFailureGroupAndWatchesItsProgress() async throws {
        let chromium = try await browser()
        let scene = try await IngestingScene.start(queuePrefix: "group") { email in
            email.userId == "other" ? "550 mailbox gone" : "421 server busy for \(email.email)"
        }
        let (dashboard, queue, fixed) = (scene.dashboard, scene.queue, scene.fixed)
        func heldCount() async -> Int {
            ((await scene.api("/api/dead-letters?queue=\(queue)").json?["dead_letters"] as? [[String: Any]]) ?? [])
                .filter { $0["held"] as? Bool == true }.count
        }
        var failure: (any Error)?
        do {
            try await inWindow(chromium, dashboard) { window in
                // Another failure first (a group of its own), then the three of one group, the most recently seen.
                try await scene.publish("other")
                let ids = ["group-1", "group-2", "group-3"]
                for id in ids { try await scene.publish(id) }
                #expect(try await eventually { await heldCount() == 4 }, "the four dead letters taken into the ledger")
                fixed.open()

                // The group's page offers to replay the three; the confirmation says how many.
                try await signIn(
                    window, dashboard, user: "ada", password: SeededDashboard.operatorPassword,
                    from: "/failures?queue=\(queue)")
                try await window.find("td.error-text a").click()
                try await window.waitForURL(containing: "/failures/")
                #expect(try await window.find("p.actions").text().contains("3 of them wait in the ledger"))
                try await window.find("p.actions a.button").click()
                try await window.waitForURL(containing: "/replay")
                #expect(try await window.find("h1").text().hasPrefix("Replay all 3 dead letters of group"))
                try await snap(window, "group-replay")
                try await window.find("main form button[type=submit]").click()
                try await window.waitForURL(containing: "/operations/")
                try await window.waitUntil("the operation to finish", timeout: .seconds(30)) {
                    try await window.go(to: try await window.currentURL())
                    return try await window.find("dl.facts .badge").text() == "done"
                }
                #expect(try await window.find("main p strong").text() == "3")
                #expect(try await window.visibleText().contains("3 of 3 replayed"))
                try await snap(window, "operation")
                for id in ids {
                    #expect(
                        try await eventually(timeout: .seconds(30)) { await scene.status(id) == "succeeded" },
                        "\(id) succeeded after its replay")
                }
                #expect(await heldCount() == 1, "the other group's is still held")

                // Everything a failures search selects: the queue's one left, purged.
                try await window.go(to: dashboard.address + "/failures?queue=\(queue)")
                #expect(
                    try await window.find("p.actions").text().contains(
                        "1 dead letters of this search wait in the ledger"))
                try await window.find("p.actions a.button.danger").click()
                try await window.waitForURL(containing: "/operations/new")
                #expect(try await window.find("h1").text() == "Purge all 1 dead letters of queue=\(queue)?")
                try await window.find("main form button[type=submit]").click()
                try await window.waitForURL(containing: "/operations/dashboard-")
                try await window.waitUntil("the purge to finish", timeout: .seconds(30)) {
                    try await window.go(to: try await window.currentURL())
                    return try await window.find("dl.facts .badge").text() == "done"
                }
                #expect(try await window.visibleText().contains("1 of 1 purged"))
                #expect(try await eventually { await scene.status("other") == "purged" })
                #expect(await heldCount() == 0)

                // The operations page and the audit log.
                try await window.find("nav a[href='/operations']").click()
                try await window.waitForURL(containing: "/operations")
                let rows = try await window.findAll("tbody tr")
                #expect(rows.count == 2)
                #expect(try await rows.first?.text().contains("purge queue=\(queue)") == true)
                try await window.go(to: dashboard.address + "/audit")
                let audit = try await window.findAll("tbody tr")
                let purge = try await audit[0].text()
                let replay = try await audit[1].text()
                #expect(
                    purge.contains("ada (operator) purge queue=\(queue)") && purge.contains("1 started"), "\(purge)")
                #expect(replay.contains("ada (operator) replay group=") && replay.contains("3 started"), "\(replay)")
            }
        } catch { failure = error }
        try await scene.finish()
        if let failure { throw failure }
    }

    @Test func hostileContentIsShownAsTextAndNothingRuns() async throws {
        let chromium = try await browser()
        let dashboard = try await SeededDashboard.start()
        try await inWindow(chromium, dashboard) { window in
            try await signIn(
                window, dashboard, user: "grace", password: SeededDashboard.viewerPassword,
                from: "/dead-letters/hostile-1")
            #expect(try await window.currentURL() == dashboard.address + "/dead-letters/hostile-1")
            #expect(try await window.find(".who").text() == "grace (viewer)")
            // Nothing from the message became an element, and nothing ran.
            #expect(
                try await window.evaluate("return document.querySelectorAll('script, img, b, i').length") as? Int == 0)
            #expect(try await window.evaluate("return typeof window.pwned") as? String == "undefined")
            let body =
                try await window.evaluate("return document.querySelector('pre.body').textContent") as? String ?? ""
            #expect(body.hasPrefix(SeededDashboard.hostileBody), "the body, as text, to the byte")
            #expect(body.utf8.count == 256 * 1024, "a long body is shown up to the display limit")
            // The ledger keeps at most 256 KiB of a body an event carries (LedgerBounds), marked as cut.
            #expect(try await window.visibleText().contains("The event carried only the start of the body"))
            let headers =
                try await window.evaluate(
                    "return Array.from(document.querySelectorAll('table.headers tr')).map(r => r.textContent)")
                as? [String] ?? []
            #expect(
                headers.contains("<i>name</i>v") && headers.contains("x-note\(SeededDashboard.hostileHeader)"),
                "\(headers)")
            #expect(try await window.find("dl.facts").text().contains("<script>window.pwned='error'</script>"))
            try await snap(window, "hostile")

            // The same type and error in the jobs list and the failures page.
            for path in ["/jobs", "/failures", "/jobs/hostile-1"] {
                try await window.go(to: dashboard.address + path)
                #expect(
                    try await window.evaluate("return document.querySelectorAll('main script, main img').length")
                        as? Int == 0, "\(path)")
                #expect(
                    try await window.visibleText().contains(#"<img src=x onerror="window.pwned='type'">"#), "\(path)")
            }
            #expect(try await window.evaluate("return typeof window.pwned") as? String == "undefined")
            let source = try await window.evaluate("return document.documentElement.outerHTML") as? String ?? ""
            #expect(
                !source.contains(SeededDashboard.token) && !source.contains(SeededDashboard.viewerPassword),
                "no secret in a page")
        }
    }
}

/// A dashboard ingesting from the test broker, with a worker of its own queue (failing until `fixed` opens) reporting
/// its events to it, for the browser tests that replay.
struct IngestingScene {
    let url: String
    let queue: String
    let ledgerQueue: String
    let dashboard: SeededDashboard
    let transport: RabbitMQTransport
    let events: WarrenEventPublisher
    let worker: RunningWorker
    /// Closed: the worker rejects every message; open: it handles them.
    let fixed: Release

    /// - Parameter error: what the worker's handler rejects a message with while `fixed` is closed.
    static func start(queuePrefix: String, error: @escaping @Sendable (WelcomeEmail) -> String) async throws
        -> IngestingScene
    {
        let url = try await TestBroker.url()
        let queue = TestBroker.uniqueName(queuePrefix)
        let exchange = TestBroker.uniqueName("events")
        let ledgerQueue = TestBroker.uniqueName("ledger")
        let dashboard = try await SeededDashboard.start(brokerURL: url, ingest: (ledgerQueue, exchange), watch: [queue])
        let transport = RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger())
        try await transport.start()
        let events = WarrenEventPublisher(
            transport: transport, options: EventOptions(exchange: exchange, flushInterval: .milliseconds(20)),
            logger: TestBroker.quietLogger())
        let fixed = Release()
        let registration = HandlerRegistration(WelcomeEmail.self, queue: queue) { email, _ in
            if !fixed.isOpen { throw Reject(error(email)) }
        }
        let worker = try await RunningWorker.start(
            queue: queue, registrations: [registration], configuration: WorkerConfiguration(events: events))
        return IngestingScene(
            url: url, queue: queue, ledgerQueue: ledgerQueue, dashboard: dashboard, transport: transport,
            events: events, worker: worker,
            fixed: fixed)
    }

    func publish(_ id: String) async throws {
        try await WarrenPublisher(transport: transport, events: events)
            .publish(WelcomeEmail(userId: id, email: "\(id)@example.com"), to: .queue(queue), messageID: id)
    }

    /// GET `path` of the dashboard's API with the operator's token.
    func api(_ path: String) async -> HTTPAnswer {
        await httpGet(port: dashboard.port, path, headers: ["Authorization": "Bearer \(SeededDashboard.token)"])
    }

    func status(_ id: String) async -> String? { await api("/api/jobs/\(id)").json?["status"] as? String }

    /// Stops the worker and the publisher's connection, and deletes the ledger's queues (the dashboard stops with its window).
    func finish() async throws {
        await worker.stop()
        await transport.close()
        let connection = try await AMQPConnection.connect(to: AMQPEndpoint(uri: url))
        let channel = try await connection.openChannel()
        for name in [ledgerQueue, "\(ledgerQueue).redelivered"] { _ = try? await channel.queueDelete(name) }
        await connection.close()
    }
}
