import Foundation
import Warren

/// A search of the ledger's jobs, newest first (by ``JobSummary/updatedAtMs``, then message id), one page at a time.
/// Pages follow each other by a cursor (keyset pagination): a page costs the same however deep it is, and jobs
/// recorded meanwhile never shift the next page.
public struct JobQuery: Sendable, Equatable {
    public var queue: String?
    public var type: String?
    public var state: JobState?
    /// Only jobs whose latest event is at or after this time (milliseconds since 1970).
    public var sinceMs: Int64?
    /// Only jobs whose latest event is before this time (milliseconds since 1970).
    public var untilMs: Int64?
    /// Rows per page, 1 to ``maximumLimit``.
    public var limit: Int
    /// The previous page's ``JobPage/next``; `nil` for the first page.
    public var after: LedgerCursor?
    /// Only the runs of this recurring job (``JobSummary/schedule``).
    public var schedule: String?

    public static let maximumLimit = 500

    public init(
        queue: String? = nil, type: String? = nil, state: JobState? = nil, sinceMs: Int64? = nil, untilMs: Int64? = nil,
        limit: Int = 50, after: LedgerCursor? = nil, schedule: String? = nil
    ) {
        self.schedule = schedule
        self.queue = queue
        self.type = type
        self.state = state
        self.sinceMs = sinceMs
        self.untilMs = untilMs
        self.limit = min(max(limit, 1), Self.maximumLimit)
        self.after = after
    }
}

/// Where a page ended (of jobs: the last one's ``JobSummary/updatedAtMs``; of dead letters: the last one's time) and
/// the last row's message id. Opaque to clients (``token``).
public struct LedgerCursor: Sendable, Equatable {
    public var atMs: Int64
    public var messageID: String

    public init(atMs: Int64, messageID: String) {
        self.atMs = atMs
        self.messageID = messageID
    }

    /// The cursor as a URL-safe string (base64url of `<at_ms>:<message_id>`).
    public var token: String {
        Data("\(atMs):\(messageID)".utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// The first `limit` of `rows` (fetched with one row more than a page, to know whether another follows) and the
    /// cursor of the next page, `nil` when none follows.
    static func page<Row>(_ rows: [Row], limit: Int, cursor: (Row) -> LedgerCursor) -> ([Row], LedgerCursor?) {
        guard rows.count > limit else { return (rows, nil) }
        let page = Array(rows.prefix(limit))
        return (page, page.last.map(cursor))
    }

    /// Reads a ``token``; `nil` for anything else.
    public init?(token: String) {
        var base64 = token.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        guard token.count <= 2_048, let data = Data(base64Encoded: base64),
            let text = String(data: data, encoding: .utf8),
            let colon = text.firstIndex(of: ":"), let time = Int64(text[..<colon]), !text.utf8.contains(0)
        else { return nil }
        self.init(atMs: time, messageID: String(text[text.index(after: colon)...]))
    }
}

/// One page of a ``JobQuery``.
public struct JobPage: Sendable, Equatable, Encodable {
    public var jobs: [JobSummary]
    /// The cursor of the next page; `nil` when this one is the last.
    public var next: LedgerCursor?

    public init(jobs: [JobSummary], next: LedgerCursor?) {
        self.jobs = jobs
        self.next = next
    }

    enum CodingKeys: String, CodingKey { case jobs, next }

    /// `{"jobs": […], "next": "<cursor>" | null}`.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(jobs, forKey: .jobs)
        try container.encode(next?.token, forKey: .next)
    }

    /// The page of `rows` (fetched with one row more than `limit`).
    static func of(_ rows: [JobSummary], limit: Int) -> JobPage {
        let (page, next) = LedgerCursor.page(rows, limit: limit) {
            LedgerCursor(atMs: $0.updatedAtMs, messageID: $0.messageID)
        }
        return JobPage(jobs: page, next: next)
    }
}
