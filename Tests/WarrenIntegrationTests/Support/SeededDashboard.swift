import Foundation
@_spi(WarrenTransport) import Warren
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
    ///   - schedulerScope: the scheduler whose jobs `/schedules` shows (`--scheduler-scope`).
    static func start(
        brokerURL: String? = nil, ingest: (ledgerQueue: String, exchange: String)? = nil, watch: [String] = [],
        schedulerScope: String? = nil
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
        var arguments: [String] = ["--port", "0", "--store", "sqlite:\(sqlite)", "--users-file", usersFile]
        if let brokerURL { arguments += ["--url", brokerURL] }
        arguments += watch.flatMap { ["--queue", $0] }
        if let schedulerScope { arguments += ["--scheduler-scope", schedulerScope] }
        if let ingest {
            arguments += [
                "--ledger-queue", ingest.ledgerQueue, "--events-exchange", ingest.exchange, "--log-level", "warning",
            ]
        } else {
            arguments += ["--no-ingest"]
        }
        let dashboard = try LaunchedProcess(
            "warren-dashboard", arguments, environment: ["WARREN_DASHBOARD_TOKEN": token])
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
