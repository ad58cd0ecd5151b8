import ArgumentParser
import Foundation
import Warren
import WarrenLedger

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

// MARK: - ledger-search

struct LedgerSearch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger-search",
        abstract: "How fast the ledger answers searches over a big SQLite store (generated jobs and dead letters).",
        discussion: """
            Fills a SQLite ledger with --jobs jobs over 30 days (8 types, 4 queues; --dead-letters of them \
            dead-lettered with their bodies, a few retrying or running, the rest succeeded), through \
            SQLiteLedgerStore.record, then times each search --queries times: the first page (50 rows) of a type \
            and status over one day, the page after it, a queue's dead letters over all time, everything newest \
            first, the failure groups (all time, one day), a group's dead letters, a job by id. Then the same through the \
            dashboard's pages: warren-dashboard (from the same build folder) serves the file with --no-ingest, and each \
            page is fetched over HTTP, rendered HTML and all. --path keeps the file (and reuses it when it exists). The \
            last line is JSON.
            """)

    @Option(help: "Jobs in the store.") var jobs = 1_000_000
    @Option(help: "Of them, dead-lettered.") var deadLetters = 100_000
    @Option(help: "Times each search runs.") var queries = 20
    @Option(help: "The SQLite file; reused when it exists. Default: a temporary file, removed after.") var path: String?

    struct Row: Codable {
        var search: String
        var rows: Int
        var median_ms: Double
        var max_ms: Double
        /// A page's size, HTML or JSON.
        var bytes: Int? = nil
    }

    struct BenchError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    static let types = (0..<8).map { "type.\($0)" }
    static let queues = (0..<4).map { "queue-\($0)" }
    static let day: Int64 = 86_400_000

    func run() async throws {
        let file =
            path
            ?? FileManager.default.temporaryDirectory.appendingPathComponent(
                "warren-bench-search-\(UUID().uuidString).sqlite"
            ).path
        defer {
            if path == nil {
                for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: file + suffix) }
            }
        }
        let reuse = FileManager.default.fileExists(atPath: file)
        let store = try await SQLiteLedgerStore(path: file, logger: quietLogger)
        let migrating = Date()
        try await store.migrate()
        if reuse {
            print("migrated the reused file in \(String(format: "%.1f", Date().timeIntervalSince(migrating))) s")
        }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        // The newest job's time, so that a reused file gets the same day to search.
        let end = reuse ? (try await store.jobs(matching: JobQuery(limit: 1)).jobs.first?.updatedAtMs ?? now) : now
        if !reuse {
            let started = Date()
            try await fill(store, endingAt: end)
            print("filled \(jobs) jobs in \(Int(Date().timeIntervalSince(started))) s")
        }
        let dayStart = end - 3 * Self.day
        let dayEnd = dayStart + Self.day
        let firstPage = JobQuery(type: "type.3", state: .deadLettered, sinceMs: dayStart, untilMs: dayEnd)
        let next = try await store.jobs(matching: firstPage).next
        var searches: [(String, @Sendable () async throws -> Int)] = [
            ("type and dead_lettered over a day, first page", { try await store.jobs(matching: firstPage).jobs.count }),
            (
                "the same, second page",
                {
                    var query = firstPage
                    query.after = next
                    return try await store.jobs(matching: query).jobs.count
                }
            ),
            (
                "type and succeeded over a day, first page",
                {
                    try await store.jobs(
                        matching: JobQuery(type: "type.5", state: .succeeded, sinceMs: dayStart, untilMs: dayEnd)
                    ).jobs.count
                }
            ),
            (
                "a queue's dead letters, all time, first page",
                {
                    try await store.jobs(matching: JobQuery(queue: "queue-2", state: .deadLettered)).jobs.count
                }
            ),
            ("everything, newest first, first page", { try await store.jobs(matching: JobQuery()).jobs.count }),
            (
                "type only, over a day, first page",
                {
                    try await store.jobs(matching: JobQuery(type: "type.1", sinceMs: dayStart, untilMs: dayEnd)).jobs
                        .count
                }
            ),
        ]
        searches.append(
            ("failure groups, all time", { try await store.failureGroups(matching: FailureGroupQuery()).count }))
        searches.append(
            (
                "failure groups over a day",
                {
                    try await store.failureGroups(matching: FailureGroupQuery(sinceMs: dayStart, untilMs: dayEnd)).count
                }
            ))
        let group = try await store.failureGroups(matching: FailureGroupQuery(limit: 1)).first?.groupID
        searches.append(
            (
                "a failure group's dead letters, first page",
                {
                    try await store.deadLetters(matching: DeadLetterQuery(groupID: group)).deadLetters.count
                }
            ))
        let sample = try await store.jobs(matching: JobQuery(limit: 1)).jobs.first?.messageID ?? ""
        searches.append(("a job by id, with its timeline", { try await store.job(messageID: sample) == nil ? 0 : 1 }))

        var rows: [Row] = []
        for (name, search) in searches {
            var times: [Double] = []
            var count = 0
            for _ in 0..<queries {
                let start = DispatchTime.now()
                count = try await search()
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e6)
            }
            let row = Row(
                search: name, rows: count, median_ms: (median(times) * 100).rounded() / 100,
                max_ms: ((times.max() ?? 0) * 100).rounded() / 100)
            rows.append(row)
            print(
                "\(name.padding(toLength: 48, withPad: " ", startingAt: 0)) \(String(count).leftPadded(4)) rows  median \(String(format: "%7.2f", row.median_ms)) ms  max \(String(format: "%7.2f", row.max_ms)) ms"
            )
        }
        try await store.close()
        rows += try await timePages(file: file, dayStart: dayStart, dayEnd: dayEnd, group: group ?? "", job: sample)
        let json = try JSONEncoder().encode(rows)
        print(String(decoding: json, as: UTF8.self))
    }

    /// The dashboard's pages over the same file: what a person waits for, HTTP and HTML included.
    private func timePages(file: String, dayStart: Int64, dayEnd: Int64, group: String, job: String) async throws
        -> [Row]
    {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(
            "warren-dashboard")
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            print("(no pages: build warren-dashboard in the same configuration to time them)")
            return []
        }
        let token = UUID().uuidString
        let output = FileManager.default.temporaryDirectory.appendingPathComponent(
            "warren-bench-dashboard-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: output) }
        let process = Process()
        process.executableURL = binary
        process.arguments = ["--port", "0", "--store", "sqlite:\(file)", "--no-ingest", "--log-level", "error"]
        process.environment = ProcessInfo.processInfo.environment.merging(["WARREN_DASHBOARD_TOKEN": token]) { $1 }
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        defer {
            process.terminate()
            process.waitUntilExit()
        }
        var port: Int?
        for _ in 0..<600 where port == nil {
            let log = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
            port = log.split(separator: "\n").first { $0.hasPrefix("listening on http://") }.flatMap {
                $0.split(separator: ":").last
            }.flatMap { Int($0) }
            if port == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        guard let port else {
            throw BenchError(
                "warren-dashboard did not start: \((try? String(contentsOf: output, encoding: .utf8)) ?? "")")
        }
        let pages = [
            (
                "page: type and dead_lettered over a day",
                "/jobs?type=type.3&status=dead_lettered&since=\(dayStart)&until=\(dayEnd)"
            ),
            (
                "page: type and succeeded over a day",
                "/jobs?type=type.5&status=succeeded&since=\(dayStart)&until=\(dayEnd)"
            ),
            ("page: failure groups, all time", "/failures"),
            ("page: failure groups over a day", "/failures?since=\(dayStart)&until=\(dayEnd)"),
            ("page: a failure group's dead letters", "/failures/\(group)"),
            ("page: a job", "/jobs/\(job)"),
            (
                "api: type and dead_lettered over a day",
                "/api/jobs?type=type.3&status=dead_lettered&since=\(dayStart)&until=\(dayEnd)"
            ),
        ]
        var rows: [Row] = []
        for (name, path) in pages {
            var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
            request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
            var times: [Double] = []
            var body = Data()
            for _ in 0..<queries {
                let start = DispatchTime.now()
                let (data, response) = try await URLSession.shared.data(for: request)
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e6)
                guard (response as? HTTPURLResponse)?.statusCode == 200 else {
                    throw BenchError("\(path) answered \(response)")
                }
                body = data
            }
            // Rows: a page's table rows (its header row left out), or the API's jobs.
            let text = String(decoding: body, as: UTF8.self)
            let count =
                path.hasPrefix("/api/")
                ? text.components(separatedBy: "\"message_id\"").count - 1
                : max(0, text.components(separatedBy: "<tr>").count - 2)
            let row = Row(
                search: name, rows: count, median_ms: (median(times) * 100).rounded() / 100,
                max_ms: ((times.max() ?? 0) * 100).rounded() / 100,
                bytes: body.count)
            rows.append(row)
            print(
                "\(name.padding(toLength: 48, withPad: " ", startingAt: 0)) \(String(count).leftPadded(4)) rows \(String(body.count).leftPadded(7)) B  median \(String(format: "%7.2f", row.median_ms)) ms  max \(String(format: "%7.2f", row.max_ms)) ms"
            )
        }
        return rows
    }

    /// One settlement per job (its start folded in, as workers send short jobs), in transactions of 5,000.
    private func fill(_ store: SQLiteLedgerStore, endingAt end: Int64) async throws {
        let span = 30 * Self.day
        let deadEvery = max(1, jobs / max(1, deadLetters))
        var batch: [WarrenEvent] = []
        batch.reserveCapacity(5_000)
        for job in 0..<jobs {
            let at = end - span + Int64(job) * span / Int64(max(1, jobs))
            let kind: WarrenEvent.Kind = job % deadEvery == 0 ? .deadLetter : (job % 997 == 0 ? .retry : .ack)
            var event = WarrenEvent(
                event: kind, messageID: String(format: "%08x-job", job), type: Self.types[(job / 10) % 8],
                queue: Self.queues[(job / 80) % 4],
                attempt: 1, atMs: at, queueWaitMs: 4, durationMs: 20, host: "worker-\(job % 5)")
            event.startedAtMs = at - 20
            switch kind {
            case .deadLetter:
                event.reason = job % 3 == 0 ? "retries-exhausted" : "rejected"
                event.error = "550 mailbox \(job)@example.com does not exist"
                event.headers = ["x-warren-published-at": "\(at - 30)", "content-type": "application/json"]
                event.body = #"{"userId":"\#(job)","email":"\#(job)@example.com"}"#
                event.bodyEncoding = "utf8"
                event.bodyTruncated = false
            case .retry:
                event.error = "421 busy"
                event.nextAttemptAtMs = at + 1_000
            default:
                break
            }
            batch.append(event)
            if batch.count == 5_000 {
                try await store.record(batch)
                batch.removeAll(keepingCapacity: true)
            }
        }
        if !batch.isEmpty { try await store.record(batch) }
    }
}
