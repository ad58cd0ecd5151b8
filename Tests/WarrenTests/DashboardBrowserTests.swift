import Foundation
import Testing
@_spi(WarrenTransport) import Warren
import WarrenAMQP
import WarrenDashboard
import WarrenLedger
import WarrenTestSupport

/// A ledger with the jobs a dashboard shows: successes, a retry, a failure group of three, hostile and binary dead
/// letters; served by `warren-dashboard --no-ingest` to the tests below.
struct SeededDashboard {
    static let operatorPassword = "correct horse battery staple"
    static let viewerPassword = "tr0ub4dor&3"
    static let token = "operator-\(UUID().uuidString)"
    /// A body a careless page would run: script tags, an event handler, an `</pre>` to break out of its box.
    static let hostileBody = #"</pre><script>window.pwned = "body"</script><img src=x onerror="window.pwned='img'">"#
    static let hostileHeader = #"<b onmouseover="window.pwned='header'">hover</b>"#

    let dashboard: LaunchedProcess
    let port: Int
    let directory: URL

    /// - Parameters:
    ///   - brokerURL: the broker the queues page asks and replays go to; `nil`: none.
    ///   - ingest: the ledger queue and events exchange to record from (on `brokerURL`); `nil`: `--no-ingest`.
    ///   - watch: work queues whose dead letters the ledger takes from the start (`--queue`).
    static func start(
        brokerURL: String? = nil, ingest: (ledgerQueue: String, exchange: String)? = nil, watch: [String] = []
    ) async throws -> SeededDashboard {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dashboard-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let sqlite = directory.appendingPathComponent("ledger.sqlite").path
        let store = try await SQLiteLedgerStore(path: sqlite)
        try await store.migrate()
        try await store.record(events())
        try await store.close()
        // The fewest rounds the users file accepts: the format is what is under test, not PBKDF2's cost.
        let users = """
            # the dashboard's users
            ada:operator:\(try PasswordHash.make(operatorPassword, rounds: 100_000).encoded)
            grace:viewer:\(try PasswordHash.make(viewerPassword, rounds: 100_000).encoded)
            """
        let usersFile = directory.appendingPathComponent("users").path
        try users.write(toFile: usersFile, atomically: true, encoding: .utf8)
        let dashboard = try LaunchedProcess(
            "warren-dashboard",
            ["--port", "0", "--store", "sqlite:\(sqlite)", "--users-file", usersFile]
                + (brokerURL.map { ["--url", $0] } ?? [])
                + watch.flatMap { ["--queue", $0] }
                + (ingest.map {
                    ["--ledger-queue", $0.ledgerQueue, "--events-exchange", $0.exchange, "--log-level", "warning"]
                } ?? ["--no-ingest"]),
            environment: ["WARREN_DASHBOARD_TOKEN": token])
        return SeededDashboard(dashboard: dashboard, port: try await dashboard.listeningPort(), directory: directory)
    }

    func stop() async {
        await dashboard.stop()
        try? FileManager.default.removeItem(at: directory)
    }

    var address: String { "http://127.0.0.1:\(port)" }

    static func events() -> [WarrenEvent] {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        var events: [WarrenEvent] = []
        func job(_ id: String, type: String, queue: String, at: Int64, _ settlement: (Int64) -> WarrenEvent) {
            events.append(WarrenEvent(event: .published, messageID: id, type: type, queue: queue, atMs: at))
            events.append(
                WarrenEvent(
                    event: .started, messageID: id, type: type, queue: queue, attempt: 1, atMs: at + 40,
                    queueWaitMs: 40, host: "worker-1"))
            events.append(settlement(at + 40))
        }
        for index in 1...30 {
            let id = "welcome-\(index)"
            job(id, type: "email.welcome", queue: "emails", at: now - 600_000 + Int64(index) * 1_000) {
                WarrenEvent(
                    event: .ack, messageID: id, type: "email.welcome", queue: "emails", attempt: 1, atMs: $0 + 120,
                    durationMs: 120, host: "worker-1")
            }
        }
        job("invoice-7", type: "billing.invoice", queue: "billing", at: now - 90_000) {
            WarrenEvent(
                event: .retry, messageID: "invoice-7", type: "billing.invoice", queue: "billing", attempt: 1,
                atMs: $0 + 800, durationMs: 800,
                error: "HTTP 503 from payments.internal", nextAttemptAtMs: $0 + 60_800, host: "worker-2")
        }
        for index in 1...3 {
            let id = "bounce-\(index)"
            job(id, type: "email.welcome", queue: "emails", at: now - 300_000 + Int64(index) * 10_000) {
                var event = WarrenEvent(
                    event: .deadLetter, messageID: id, type: "email.welcome", queue: "emails", attempt: 1,
                    atMs: $0 + 30, durationMs: 30,
                    error: "Reject: 550 mailbox \(index)@example.com does not exist", reason: "rejected",
                    host: "worker-1",
                    traceID: "4bf92f3577b34da6a3ce929d0e0e473\(index)")
                event.headers = ["x-request-id": "req-\(index)"]
                event.body = #"{"userId":"u\#(index)","email":"\#(index)@example.com"}"#
                event.bodyEncoding = "utf8"
                return event
            }
        }
        job("hostile-1", type: #"<img src=x onerror="window.pwned='type'">"#, queue: "emails", at: now - 200_000) {
            var event = WarrenEvent(
                event: .deadLetter, messageID: "hostile-1", type: #"<img src=x onerror="window.pwned='type'">"#,
                queue: "emails", attempt: 1,
                atMs: $0 + 5, error: "<script>window.pwned='error'</script>", reason: "undecodable")
            event.headers = ["x-note": hostileHeader, "<i>name</i>": "v"]
            event.body = hostileBody + String(repeating: "A long line of text. ", count: 15_000)
            event.bodyEncoding = "utf8"
            return event
        }
        job("binary-1", type: "image.thumbnail", queue: "images", at: now - 100_000) {
            var event = WarrenEvent(
                event: .deadLetter, messageID: "binary-1", type: "image.thumbnail", queue: "images", attempt: 1,
                atMs: $0 + 5,
                error: "DecodingError: not JSON", reason: "undecodable")
            event.body = Data((0...255).map { UInt8($0) }).base64EncodedString()
            event.bodyEncoding = "base64"
            return event
        }
        return events
    }
}

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

/// The dashboard's door, over plain HTTP: cookies, CSRF, redirects and roles, checked header by header.
@Suite("The dashboard's sign-in and sessions")
struct DashboardSessionTests {
    /// A fresh sign-in form's CSRF token and the cookie that goes with it.
    static func signInForm(port: Int) async -> (token: String?, cookie: String?) {
        let form = await httpGet(port: port, "/sign-in")
        return (
            csrfToken(in: form.body),
            form.headers["set-cookie"]?.firstMatch(of: /warren_sign_in=([^;]+)/).map { String($0.1) }
        )
    }

    /// The CSRF token of a page's form.
    static func csrfToken(in page: String) -> String? {
        page.firstMatch(of: /name="csrf_token" value="([^"]+)"/).map { String($0.1) }
    }

    /// Posts the sign-in form's `fields`, with the form's cookie when given.
    static func postSignIn(port: Int, _ fields: String, cookie: String?) async -> HTTPAnswer {
        await httpRequest(
            "POST", port: port, "/sign-in",
            headers: ["Content-Type": "application/x-www-form-urlencoded"].merging(
                cookie.map { ["Cookie": "warren_sign_in=\($0)"] } ?? [:]
            ) { $1 },
            body: fields)
    }

    @Test func signingInGivesAStrictHttpOnlyCookieAndFormsNeedTheirToken() async throws {
        let dashboard = try await SeededDashboard.start()
        let port = dashboard.port

        let anonymous = await httpGet(port: port, "/jobs?type=email.welcome")
        #expect(
            anonymous.status == 303 && anonymous.headers["location"] == "/sign-in?next=%2Fjobs%3Ftype%3Demail.welcome")
        let api = await httpGet(port: port, "/api/jobs")
        #expect(api.status == 401 && api.headers["www-authenticate"] == "Bearer")
        #expect(
            await httpGet(port: port, "/api/jobs", headers: ["Authorization": "Bearer \(SeededDashboard.token)"]).status
                == 200)

        // The form's token and its cookie.
        let form = await Self.signInForm(port: port)
        let formToken = try #require(form.token)
        let formCookie = try #require(form.cookie)
        func signIn(_ fields: String, cookie: String?) async -> HTTPAnswer {
            await Self.postSignIn(port: port, fields, cookie: cookie)
        }
        let password = SeededDashboard.operatorPassword.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        #expect(
            await signIn("user=ada&password=\(password)&csrf_token=\(formToken)", cookie: nil).status == 403,
            "no form cookie: posted from elsewhere")
        #expect(await signIn("user=ada&password=wrong&csrf_token=\(formToken)", cookie: formCookie).status == 401)
        let signedIn = await signIn(
            "user=ada&password=\(password)&csrf_token=\(formToken)&next=%2F%2Fevil.example", cookie: formCookie)
        #expect(signedIn.status == 303 && signedIn.headers["location"] == "/jobs", "never sent to another site")
        let cookie = try #require(signedIn.headers["set-cookie"])
        #expect(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/"), "\(cookie)")
        let session = try #require(cookie.firstMatch(of: /warren_session=([^;]+)/)?.1).description

        // The session opens pages and the API; a form without its CSRF token is refused.
        let jobs = await httpGet(port: port, "/jobs", headers: ["Cookie": "warren_session=\(session)"])
        #expect(jobs.status == 200 && jobs.headers["content-security-policy"]?.contains("default-src 'none'") == true)
        #expect(
            await httpGet(port: port, "/api/jobs/welcome-1", headers: ["Cookie": "warren_session=\(session)"]).status
                == 200)
        // Times as durations before now: the seeded welcomes are 9 to 10 minutes old.
        let lastDay = await httpGet(
            port: port, "/jobs?type=email.welcome&status=succeeded&since=24h",
            headers: ["Cookie": "warren_session=\(session)"])
        #expect(lastDay.status == 200 && lastDay.body.contains(">welcome-30</code>"))
        let lastMinute = await httpGet(
            port: port, "/jobs?type=email.welcome&since=1m", headers: ["Cookie": "warren_session=\(session)"])
        #expect(lastMinute.status == 200 && lastMinute.body.contains("No job matches."))
        let csrf = try #require(Self.csrfToken(in: jobs.body))
        let forged = await httpRequest(
            "POST", port: port, "/sign-out",
            headers: ["Cookie": "warren_session=\(session)", "Content-Type": "application/x-www-form-urlencoded"],
            body: "csrf_token=forged")
        #expect(forged.status == 403)
        let signedOut = await httpRequest(
            "POST", port: port, "/sign-out",
            headers: ["Cookie": "warren_session=\(session)", "Content-Type": "application/x-www-form-urlencoded"],
            body: "csrf_token=\(csrf)")
        #expect(signedOut.status == 303)
        #expect(
            await httpGet(port: port, "/jobs", headers: ["Cookie": "warren_session=\(session)"]).status == 303,
            "the session is gone")
        #expect(
            !dashboard.dashboard.log.contains(SeededDashboard.operatorPassword)
                && !dashboard.dashboard.log.contains(session))
        await dashboard.stop()
    }

    @Test func repeatedWrongPasswordsMakeTheClientWait() async throws {
        let dashboard = try await SeededDashboard.start()
        let port = dashboard.port
        func signIn(_ user: String, _ password: String) async -> HTTPAnswer {
            let form = await Self.signInForm(port: port)
            let password = password.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
            return await Self.postSignIn(
                port: port, "user=\(user)&password=\(password)&csrf_token=\(form.token ?? "")",
                cookie: form.cookie ?? "")
        }
        for _ in 1...5 { #expect(await signIn("grace", "guess").status == 401) }
        let locked = await signIn("grace", SeededDashboard.viewerPassword)
        #expect(
            locked.status == 429 && Int(locked.headers["retry-after"] ?? "") == 1,
            "even the right password waits, a second at first")
        #expect(
            await signIn("ada", SeededDashboard.operatorPassword).status == 429, "the client waits, whatever the name")
        try await Task.sleep(for: .milliseconds(1_100))
        #expect(await signIn("ada", SeededDashboard.operatorPassword).status == 303, "then the right password signs in")
        await dashboard.stop()
    }

    @Test func aUsersFileIsCheckedLineByLine() throws {
        let hash = try PasswordHash.make("pw", rounds: 100_000).encoded
        let users = try DashboardUsers(parsing: "# comment\n\nada:operator:\(hash)\ngrace:viewer:\(hash)\n")
        #expect(users.users.map(\.name) == ["ada", "grace"] && users.users.map(\.role) == [.operator, .viewer])
        for bad in [
            "ada:admin:\(hash)", "ada:operator", "ada:operator:plaintext",
            "ada:operator:pbkdf2-sha256$1000$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==",
            "ada:viewer:\(hash)\nada:operator:\(hash)",
        ] {
            #expect(throws: DashboardConfigurationError.self, "\(bad)") { try DashboardUsers(parsing: bad) }
        }
        do {
            _ = try DashboardUsers(parsing: "ada:operator:secret-in-the-wrong-place")
        } catch let error as DashboardConfigurationError {
            #expect(error.message.contains("line 1") && !error.message.contains("secret-in-the-wrong-place"))
        }
    }

    @Test func aPasswordHashVerifiesOnlyItsPassword() async throws {
        let hash = try PasswordHash.make("correct", rounds: 100_000)
        let parsed = try #require(PasswordHash(encoded: hash.encoded))
        #expect(await parsed.verify("correct"))
        #expect(await !parsed.verify("Correct"))
        #expect(await !parsed.verify(""))
        #expect(try PasswordHash.make("correct", rounds: 100_000).salt != hash.salt, "a new salt each time")
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
