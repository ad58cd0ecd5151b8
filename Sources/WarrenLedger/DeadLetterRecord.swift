/// A dead letter as the ledger keeps it: why it failed, and the message's headers and body (as its event carried
/// them: up to ``EventOptions/deadLetterBodyLimit``, redacted by the host's hook).
public struct DeadLetterRecord: Sendable, Equatable, Codable {
    public var messageID: String
    /// When it was dead-lettered, in milliseconds since 1970.
    public var atMs: Int64
    public var queue: String
    public var type: String?
    public var reason: String?
    public var error: String?
    /// Its ``FailureGroup/groupID``.
    public var groupID: String?
    /// The headers, as text; `nil` in a search's rows.
    public var headers: [String: String]?
    /// UTF-8 text, or base64 when ``bodyEncoding`` says so; `nil` in a search's rows and when the host left it out.
    public var body: String?
    /// `utf8` or `base64`.
    public var bodyEncoding: String?
    public var bodyTruncated: Bool?
    /// Whether the ledger holds the message (it took it off its dead-letter queue) and it waits there to be replayed
    /// or purged; `false` while it is in its queue, or once it was settled.
    public var held: Bool
    /// `replayed` or `purged` once an operation of the ledger settled it (``settledBy`` names the operation).
    public var settled: String?
    public var settledBy: String?

    public init(
        messageID: String, atMs: Int64, queue: String, type: String?, reason: String?, error: String?, groupID: String?,
        headers: [String: String]? = nil, body: String? = nil, bodyEncoding: String? = nil, bodyTruncated: Bool? = nil,
        held: Bool = false, settled: String? = nil, settledBy: String? = nil
    ) {
        self.held = held
        self.settled = settled
        self.settledBy = settledBy
        self.messageID = messageID
        self.atMs = atMs
        self.queue = queue
        self.type = type
        self.reason = reason
        self.error = error
        self.groupID = groupID
        self.headers = headers
        self.body = body
        self.bodyEncoding = bodyEncoding
        self.bodyTruncated = bodyTruncated
    }

    enum CodingKeys: String, CodingKey {
        case queue, type, reason, error, headers, body, held, settled
        case settledBy = "settled_by"
        case messageID = "message_id"
        case atMs = "at_ms"
        case groupID = "group_id"
        case bodyEncoding = "body_encoding"
        case bodyTruncated = "body_truncated"
    }
}

/// A search of the ledger's dead letters, newest first (by time, then message id), a page at a time by cursor.
public struct DeadLetterQuery: Sendable, Equatable {
    /// Only this failure group's (``FailureGroup/groupID``).
    public var groupID: String?
    public var queue: String?
    /// At or after this time (milliseconds since 1970).
    public var sinceMs: Int64?
    /// Before this time (milliseconds since 1970).
    public var untilMs: Int64?
    /// Rows per page, 1 to ``JobQuery/maximumLimit``.
    public var limit: Int
    /// The previous page's ``DeadLetterPage/next``.
    public var after: LedgerCursor?

    public init(
        groupID: String? = nil, queue: String? = nil, sinceMs: Int64? = nil, untilMs: Int64? = nil, limit: Int = 50,
        after: LedgerCursor? = nil
    ) {
        self.groupID = groupID
        self.queue = queue
        self.sinceMs = sinceMs
        self.untilMs = untilMs
        self.limit = min(max(limit, 1), JobQuery.maximumLimit)
        self.after = after
    }
}

/// One page of a ``DeadLetterQuery``: rows without headers and body.
public struct DeadLetterPage: Sendable, Equatable, Encodable {
    public var deadLetters: [DeadLetterRecord]
    /// The cursor of the next page; `nil` when this one is the last.
    public var next: LedgerCursor?

    public init(deadLetters: [DeadLetterRecord], next: LedgerCursor?) {
        self.deadLetters = deadLetters
        self.next = next
    }

    enum CodingKeys: String, CodingKey {
        case next
        case deadLetters = "dead_letters"
    }

    /// `{"dead_letters": […], "next": "<cursor>" | null}`.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(deadLetters, forKey: .deadLetters)
        try container.encode(next?.token, forKey: .next)
    }

    /// The page of `rows` (fetched with one row more than `limit`).
    static func of(_ rows: [DeadLetterRecord], limit: Int) -> DeadLetterPage {
        let (page, next) = LedgerCursor.page(rows, limit: limit) {
            LedgerCursor(atMs: $0.atMs, messageID: $0.messageID)
        }
        return DeadLetterPage(deadLetters: page, next: next)
    }
}
