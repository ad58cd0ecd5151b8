import Foundation
import Hummingbird
import Synchronization
import Warren
import WarrenLedger

/// `POST /reports`, `GET /reports/{id}`, `GET /reports/{id}/file`.
struct ReportRoutes: Sendable {
    let publisher: WarrenPublisher
    let store: any LedgerStore
    let reports: ReportFiles
    /// Reports accepted in the last minutes: their `published` event may not be in the ledger yet.
    private let accepted = RecentlyAccepted()

    init(publisher: WarrenPublisher, store: any LedgerStore, reports: ReportFiles) {
        self.publisher = publisher
        self.store = store
        self.reports = reports
    }

    struct Request: Decodable {
        var month: String?
    }

    /// What `POST /reports` and `GET /reports/{id}` answer.
    struct Status: Encodable {
        var reportID: String
        var status: JobState
        var statusURL: String?
        var attempts: Int?
        var nextAttemptAtMs: Int64?
        var reason: String?
        var error: String?

        enum CodingKeys: String, CodingKey {
            case status, attempts, reason, error
            case reportID = "report_id"
            case statusURL = "status_url"
            case nextAttemptAtMs = "next_attempt_at_ms"
        }
    }

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.post("reports") { request, _ in
            let body = try await request.body.collect(upTo: 4_096)
            guard let asked = try? JSONDecoder().decode(Request.self, from: Data(buffer: body)) else {
                return try Self.json(
                    ["error": "bad_request", "message": "send a JSON object: {\"month\": \"2026-10\"}"],
                    status: .badRequest)
            }
            guard let month = asked.month, Self.isMonth(month) else {
                return try Self.json(
                    ["error": "bad_request", "message": "month must be yyyy-MM, e.g. 2026-10"], status: .badRequest)
            }
            let id = UUID().uuidString.lowercased()
            // Confirmed by the broker before the answer: a 202 means the job is queued.
            try await publisher.publish(
                ReportRequested(reportID: id, month: month), to: .queue(ReportRequested.queue), messageID: id)
            accepted.insert(id)
            return try Self.json(
                Status(reportID: id, status: .pending, statusURL: "/reports/\(id)"), status: .accepted,
                headers: [.location: "/reports/\(id)"])
        }

        router.get("reports/:id") { _, context in
            let id = try context.parameters.require("id")
            guard Self.isReportID(id) else { return try Self.notFound() }
            guard let job = try await store.job(messageID: id) else {
                if reports.exists(id) { return Self.seeOther(id) }  // done, and pruned from the ledger since
                guard accepted.contains(id) else { return try Self.notFound() }
                return try Self.json(
                    Status(reportID: id, status: .pending), status: .accepted, headers: [.retryAfter: "1"])
            }
            switch job.state {
            case .succeeded:
                return Self.seeOther(id)
            case .deadLettered:
                return try Self.json(
                    Status(
                        reportID: id, status: job.state, attempts: job.attempts, reason: job.reason,
                        error: job.lastError),
                    status: .internalServerError)
            default:
                return try Self.json(
                    Status(
                        reportID: id, status: job.state, attempts: job.attempts, nextAttemptAtMs: job.nextAttemptAtMs),
                    status: .accepted, headers: [.retryAfter: "1"])
            }
        }

        router.get("reports/:id/file") { _, context in
            let id = try context.parameters.require("id")
            guard Self.isReportID(id), let contents = try? Data(contentsOf: reports.url(of: id)) else {
                return try Self.notFound()
            }
            return Response(
                status: .ok,
                headers: [
                    .contentType: "text/csv; charset=utf-8",
                    .contentDisposition: "attachment; filename=\"report-\(id).csv\"",
                ],
                body: .init(byteBuffer: ByteBuffer(bytes: contents)))
        }
    }

    static func isMonth(_ text: String) -> Bool {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count == 4, parts[1].count == 2, let year = Int(parts[0]),
            let month = Int(parts[1])
        else {
            return false
        }
        return (1...9999).contains(year) && (1...12).contains(month)
    }

    /// A report id is a lowercase UUID: nothing else reaches the file system.
    static func isReportID(_ text: String) -> Bool { ReportFiles.isReportID(text) }

    static func seeOther(_ id: String) -> Response {
        Response(status: .seeOther, headers: [.location: "/reports/\(id)/file"])
    }

    static func notFound() throws -> Response {
        try json(["error": "not_found", "message": "no such report"], status: .notFound)
    }

    static func json(_ body: some Encodable, status: HTTPResponse.Status, headers: HTTPFields = [:]) throws -> Response
    {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var data = try encoder.encode(body)
        data.append(UInt8(ascii: "\n"))
        var fields = headers
        fields[.contentType] = "application/json"
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// The ids accepted in the last ten minutes (at most 100,000).
final class RecentlyAccepted: Sendable {
    private let ids = Mutex<[String: ContinuousClock.Instant]>([:])

    func insert(_ id: String) {
        let now = ContinuousClock.now
        ids.withLock { ids in
            if ids.count >= 100_000 { ids = ids.filter { now - $0.value < .seconds(600) } }
            if ids.count < 100_000 { ids[id] = now }
        }
    }

    func contains(_ id: String) -> Bool {
        ids.withLock { $0[id].map { ContinuousClock.now - $0 < .seconds(600) } ?? false }
    }
}
