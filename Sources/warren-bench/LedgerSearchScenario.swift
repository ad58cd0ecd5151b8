import ArgumentParser
import Foundation
import Warren
import WarrenLedger

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
            first, the failure groups (all time, one day), a group's dead letters, a job by id. --path keeps the file (and reuses it when it exists). The last line is JSON.
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
    }

    static let types = (0..<8).map { "type.\($0)" }
    static let queues = (0..<4).map { "queue-\($0)" }
    static let day: Int64 = 86_400_000

    func run() async throws {
        let file = path ?? FileManager.default.temporaryDirectory.appendingPathComponent("warren-bench-search-\(UUID().uuidString).sqlite").path
        defer { if path == nil { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: file + suffix) } } }
        let reuse = FileManager.default.fileExists(atPath: file)
        let store = try await SQLiteLedgerStore(path: file, logger: quietLogger)
        let migrating = Date()
        try await store.migrate()
        if reuse { print("migrated the reused file in \(String(format: "%.1f", Date().timeIntervalSince(migrating))) s") }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        // The newest job's time, so that a reused file gets the same day to search.
        let end = reuse ? (try await store.jobs(matching: JobQuery(limit: 1)).jobs.first?.updatedAtMs ?? now) : now
        if !reuse {
            let started = Date()
            try await fill(store, endingAt: end)
            print("filled \(jobs) jobs in \(Int(Date().timeIntervalSince(started))) s")
        }
        let dayStart = end - 3 * Self.day, dayEnd = dayStart + Self.day
        let firstPage = JobQuery(type: "type.3", state: .deadLettered, sinceMs: dayStart, untilMs: dayEnd)
        let next = try await store.jobs(matching: firstPage).next
        var searches: [(String, @Sendable () async throws -> Int)] = [
            ("type and dead_lettered over a day, first page", { try await store.jobs(matching: firstPage).jobs.count }),
            ("the same, second page", {
                var query = firstPage
                query.after = next
                return try await store.jobs(matching: query).jobs.count
            }),
            ("type and succeeded over a day, first page", {
                try await store.jobs(matching: JobQuery(type: "type.5", state: .succeeded, sinceMs: dayStart, untilMs: dayEnd)).jobs.count
            }),
            ("a queue's dead letters, all time, first page", {
                try await store.jobs(matching: JobQuery(queue: "queue-2", state: .deadLettered)).jobs.count
            }),
            ("everything, newest first, first page", { try await store.jobs(matching: JobQuery()).jobs.count }),
            ("type only, over a day, first page", {
                try await store.jobs(matching: JobQuery(type: "type.1", sinceMs: dayStart, untilMs: dayEnd)).jobs.count
            }),
        ]
        searches.append(("failure groups, all time", { try await store.failureGroups(matching: FailureGroupQuery()).count }))
        searches.append(("failure groups over a day", {
            try await store.failureGroups(matching: FailureGroupQuery(sinceMs: dayStart, untilMs: dayEnd)).count
        }))
        let group = try await store.failureGroups(matching: FailureGroupQuery(limit: 1)).first?.groupID
        searches.append(("a failure group's dead letters, first page", {
            try await store.deadLetters(matching: DeadLetterQuery(groupID: group)).deadLetters.count
        }))
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
            let row = Row(search: name, rows: count, median_ms: (median(times) * 100).rounded() / 100, max_ms: ((times.max() ?? 0) * 100).rounded() / 100)
            rows.append(row)
            print("\(name.padding(toLength: 48, withPad: " ", startingAt: 0)) \(String(count).leftPadded(4)) rows  median \(String(format: "%7.2f", row.median_ms)) ms  max \(String(format: "%7.2f", row.max_ms)) ms")
        }
        try await store.close()
        let json = try JSONEncoder().encode(rows)
        print(String(decoding: json, as: UTF8.self))
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
                event: kind, messageID: String(format: "%08x-job", job), type: Self.types[(job / 10) % 8], queue: Self.queues[(job / 80) % 4],
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
