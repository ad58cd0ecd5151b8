import Foundation
import Hummingbird
import WarrenLedger

/// The ledger's JSON API (snake_case), as Hummingbird routes; `warren-dashboard` serves it under `/api/`, behind
/// ``DashboardAccess`` (``Dashboard``):
///
/// - `GET jobs/{message_id}`: a job's status and attempts (``JobStatus``); 404 when the ledger has no such job.
/// - `GET jobs?queue=&type=&status=&since=&until=&limit=&after=`: a page of jobs, newest first (``JobPage``:
///   `{"jobs": [...], "next": cursor | null}`). `since`/`until` are milliseconds since 1970 or ISO 8601 times
///   (`2026-11-29T10:00:00Z`) or durations before now (`24h`, `7d`); `limit` 1–500 (default 50); `after` the previous
///   page's `next`.
///
/// - `GET failures?queue=&since=&until=&limit=`: the dead letters grouped by failure (``FailureGroup``: type, reason
///   and the error with numbers and ids masked), the most recently seen first: `{"groups": [...]}`; `limit` 1–500
///   (default 50) groups.
///
/// - `GET dead-letters/{message_id}`: a job's dead letters (several when it was replayed and failed again), newest
///   first, with headers and body: `{"dead_letters": [...]}`; 404 when it has none.
/// - `GET dead-letters?group=&queue=&since=&until=&limit=&after=`: a page of dead letters, newest first, without
///   headers and body (``DeadLetterPage``: `{"dead_letters": [...], "next": cursor | null}`).
///
/// A bad parameter answers 400 with `{"error": "bad_request", "message": …}`.
public struct LedgerAPI: Sendable {
    public let store: any LedgerStore

    public init(store: any LedgerStore) {
        self.store = store
    }

    /// Adds the routes to `router`, under its path (`addRoutes(to: router.group("api"))`). Answers are encoded by the
    /// request context's encoder (``DashboardRequestContext`` sorts keys and forbids caching).
    public func addRoutes<Context: RequestContext>(to router: some RouterMethods<Context>) {
        addJobRoutes(to: router)
        addDeadLetterRoutes(to: router)
        addFailureRoutes(to: router)
    }

    func addJobRoutes<Context: RequestContext>(to router: some RouterMethods<Context>) {
        router.get("jobs/:message_id") { request, context in
            let id = try context.parameters.require("message_id")
            guard let job = try await store.job(messageID: id) else {
                return try APIError("not_found", "no job with this message id in the ledger").response(
                    .notFound, for: request, context: context)
            }
            return try JSONAnswer(job).response(.ok, for: request, context: context)
        }
        router.get("jobs") { request, context in
            try await Self.answer(request, context, parse: { try Self.query(from: $0) }) {
                try await store.jobs(matching: $0)
            }
        }
    }

    func addDeadLetterRoutes<Context: RequestContext>(to router: some RouterMethods<Context>) {
        router.get("dead-letters/:message_id") { request, context in
            let id = try context.parameters.require("message_id")
            let letters = try await store.deadLetters(messageID: id)
            guard !letters.isEmpty else {
                return try APIError("not_found", "no dead letter with this message id in the ledger")
                    .response(.notFound, for: request, context: context)
            }
            return try JSONAnswer(["dead_letters": letters]).response(.ok, for: request, context: context)
        }
        router.get("dead-letters") { request, context in
            try await Self.answer(request, context, parse: Self.deadLetterQuery(from:)) {
                try await store.deadLetters(matching: $0)
            }
        }
    }

    func addFailureRoutes<Context: RequestContext>(to router: some RouterMethods<Context>) {
        router.get("failures") { request, context in
            try await Self.answer(request, context, parse: Self.failureQuery(from:)) {
                ["groups": try await store.failureGroups(matching: $0)]
            }
        }
    }

    /// The JSON of `search` for the query `parse` reads from the request's query string; 400 when it cannot.
    static func answer<Query, Answer: Encodable>(
        _ request: Request, _ context: some RequestContext, parse: ([(key: String, value: String)]) throws -> Query,
        search: (Query) async throws -> Answer
    ) async throws -> Response {
        let query: Query
        do {
            query = try parse(request.uri.queryParameters.map { (String($0.key), String($0.value)) })
        } catch let error as BadRequest {
            return try APIError("bad_request", error.message).response(.badRequest, for: request, context: context)
        }
        return try JSONAnswer(try await search(query)).response(.ok, for: request, context: context)
    }

    /// The dead letters a request's query string asks for.
    static func deadLetterQuery(from parameters: [(key: String, value: String)]) throws -> DeadLetterQuery {
        let common = try query(from: parameters, known: ["group", "queue", "since", "until", "limit", "after"])
        let group = parameters.last(where: { $0.key == "group" }).flatMap { $0.value.isEmpty ? nil : $0.value }
        return DeadLetterQuery(
            groupID: group, queue: common.queue, sinceMs: common.sinceMs, untilMs: common.untilMs, limit: common.limit,
            after: common.after)
    }

    /// The failure groups a request's query string asks for.
    static func failureQuery(from parameters: [(key: String, value: String)]) throws -> FailureGroupQuery {
        let jobs = try query(from: parameters, known: ["queue", "since", "until", "limit"])
        return FailureGroupQuery(queue: jobs.queue, sinceMs: jobs.sinceMs, untilMs: jobs.untilMs, limit: jobs.limit)
    }

    struct BadRequest: Error {
        var message: String
    }

    /// The search a request's query string asks for.
    static func query(
        from parameters: [(key: String, value: String)],
        known: Set<String> = ["queue", "type", "status", "schedule", "since", "until", "limit", "after"]
    ) throws -> JobQuery {
        if let unknown = parameters.map(\.key).first(where: { !known.contains($0) }) {
            throw BadRequest(message: "unknown parameter \(unknown) (known: \(known.sorted().joined(separator: ", ")))")
        }
        func value(_ name: String) -> String? {
            parameters.last(where: { $0.key == name }).flatMap { $0.value.isEmpty ? nil : $0.value }
        }
        var query = JobQuery(queue: value("queue"), type: value("type"), schedule: value("schedule"))
        if let status = value("status") {
            guard let state = JobState.all.first(where: { $0.rawValue == status }) else {
                throw BadRequest(
                    message: "status must be one of \(JobState.all.map(\.rawValue).joined(separator: ", "))")
            }
            query.state = state
        }
        query.sinceMs = try value("since").map { try time($0, "since") }
        query.untilMs = try value("until").map { try time($0, "until") }
        if let limit = value("limit") { query.limit = try Self.limit(limit) }
        if let after = value("after") {
            guard let cursor = LedgerCursor(token: after) else {
                throw BadRequest(message: "after is not a cursor this API gave")
            }
            query.after = cursor
        }
        return query
    }

    /// A page size from 1 to `maximum`.
    static func limit(_ text: String, maximum: Int = JobQuery.maximumLimit) throws -> Int {
        guard text.utf8.count <= 6, let number = Int(text), (1...maximum).contains(number) else {
            throw BadRequest(message: "limit must be a number from 1 to \(maximum)")
        }
        return number
    }

    /// The `limit` and `before` (an id) of a list read newest first, such as the audit log and the operations.
    static func listQuery(from parameters: [(key: String, value: String)], known: Set<String>) throws -> (
        limit: Int, before: Int64?
    ) {
        if let unknown = parameters.map(\.key).first(where: { !known.contains($0) }) {
            throw BadRequest(message: "unknown parameter \(unknown) (known: \(known.sorted().joined(separator: ", ")))")
        }
        func value(_ name: String) -> String? {
            parameters.last(where: { $0.key == name }).flatMap { $0.value.isEmpty ? nil : $0.value }
        }
        let limit = try value("limit").map { try Self.limit($0) } ?? 50
        let before = try value("before").map { text -> Int64 in
            guard let id = Int64(text), id > 0 else {
                throw BadRequest(message: "before must be an entry's id (a positive number)")
            }
            return id
        }
        return (limit, before)
    }

    /// Milliseconds since 1970, from a number of them, an ISO 8601 time, or a duration before now (`90s`, `30m`,
    /// `24h`, `7d`).
    static func time(
        _ text: String, _ name: String, nowMs: Int64 = Int64((Date().timeIntervalSince1970 * 1000).rounded())
    ) throws -> Int64 {
        if let milliseconds = Int64(text) { return milliseconds }
        if let ago = ShortDuration.milliseconds(text) { return nowMs - ago }
        let formatter = ISO8601DateFormatter()
        for options: ISO8601DateFormatter.Options in [
            [.withInternetDateTime, .withFractionalSeconds], [.withInternetDateTime],
        ] {
            formatter.formatOptions = options
            if let date = formatter.date(from: text) { return Int64((date.timeIntervalSince1970 * 1000).rounded()) }
        }
        throw BadRequest(
            message:
                "\(name) must be a duration before now of at most 100 years (90s, 30m, 24h, 7d), an ISO 8601 time such as 2026-11-29T10:00:00Z, or milliseconds since 1970"
        )
    }
}

/// `90s`, `30m`, `12h`, `7d`: how the dashboard's options and searches write a duration.
package enum ShortDuration {
    /// The longest duration written this way: 100 years, far beyond any retention or search, and far from overflowing
    /// a time in milliseconds.
    package static let maximumMilliseconds: Int64 = 100 * 365 * 86_400_000

    /// The milliseconds `text` stands for; `nil` when it is not a count followed by `s`, `m`, `h` or `d`, or when it is
    /// longer than ``maximumMilliseconds``.
    package static func milliseconds(_ text: String) -> Int64? {
        let units: [Character: Int64] = ["s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000]
        guard let unit = text.last.flatMap({ units[$0] }), text.utf8.count <= 20, let count = Int64(text.dropLast()),
            count >= 0
        else { return nil }
        let (milliseconds, overflow) = count.multipliedReportingOverflow(by: unit)
        guard !overflow, milliseconds <= maximumMilliseconds else { return nil }
        return milliseconds
    }
}
