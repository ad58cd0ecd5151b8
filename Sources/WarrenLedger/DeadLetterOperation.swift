/// A replay or a purge of the dead letters a ledger holds, as the store records it: what it applies to, who asked,
/// and how far it got. Durable: a process killed halfway leaves it `running`, and the next one to claim it
/// (``DeadLetterOperationRunner``) carries on after ``cursor``.
public struct DeadLetterOperation: Sendable, Equatable, Codable {
    public enum Action: String, Sendable, Codable {
        /// Publish each back to its work queue (``Warren/DeadLetterReplay``), marked with the operation's id.
        case replay
        /// Delete each for good.
        case purge
    }

    public enum Status: String, Sendable, Codable {
        case running
        /// Every dead letter it selected is replayed or purged (or was settled by another operation meanwhile).
        case done
        /// Stopped by an error a retry could not get past (``error``); what it settled stays settled.
        case failed
    }

    /// Its request id: the replay mark (`x-warren-replay-id`) of every copy it publishes.
    public var id: String
    public var action: Action
    public var filter: DeadLetterFilter
    /// Who asked (a users file's name, `token`, or the CLI's), and their role.
    public var actor: String
    public var role: String
    /// Milliseconds since 1970. The operation takes the dead letters of ``filter`` that failed before this time
    /// (a message that fails again after its replay is a new dead letter, not one of this operation's).
    public var createdAtMs: Int64
    public var status: Status
    /// The dead letters it selected when it was created.
    public var total: Int
    /// Replayed or purged so far.
    public var settled: Int
    /// The last dead letter settled (the operation goes oldest first); `nil` before the first.
    public var cursor: LedgerCursor?
    public var updatedAtMs: Int64
    /// Why it failed.
    public var error: String?

    public init(
        id: String, action: Action, filter: DeadLetterFilter, actor: String, role: String, createdAtMs: Int64,
        total: Int,
        status: Status = .running, settled: Int = 0, cursor: LedgerCursor? = nil, updatedAtMs: Int64? = nil,
        error: String? = nil
    ) {
        self.id = id
        self.action = action
        self.filter = filter
        self.actor = actor
        self.role = role
        self.createdAtMs = createdAtMs
        self.total = total
        self.status = status
        self.settled = settled
        self.cursor = cursor
        self.updatedAtMs = updatedAtMs ?? createdAtMs
        self.error = error
    }

    /// What it selects: ``filter``, before its creation.
    public var selection: DeadLetterFilter {
        var selection = filter
        selection.untilMs = min(filter.untilMs ?? .max, createdAtMs + 1)
        return selection
    }

    /// After `count` more dead letters, the last of them at `cursor`, were settled at `nowMs`.
    public func advanced(by count: Int, to cursor: LedgerCursor, nowMs: Int64) -> DeadLetterOperation {
        var next = self
        next.settled += count
        next.cursor = cursor
        next.updatedAtMs = nowMs
        return next
    }

    enum CodingKeys: String, CodingKey {
        case id, action, filter, actor, role, status, total, settled, error
        case createdAtMs = "created_at_ms"
        case updatedAtMs = "updated_at_ms"
        case cursor
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(action, forKey: .action)
        try container.encode(filter, forKey: .filter)
        try container.encode(actor, forKey: .actor)
        try container.encode(role, forKey: .role)
        try container.encode(status, forKey: .status)
        try container.encode(total, forKey: .total)
        try container.encode(settled, forKey: .settled)
        try container.encode(error, forKey: .error)
        try container.encode(createdAtMs, forKey: .createdAtMs)
        try container.encode(updatedAtMs, forKey: .updatedAtMs)
        try container.encode(cursor?.token, forKey: .cursor)
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        action = try container.decode(Action.self, forKey: .action)
        filter = try container.decode(DeadLetterFilter.self, forKey: .filter)
        actor = try container.decode(String.self, forKey: .actor)
        role = try container.decode(String.self, forKey: .role)
        status = try container.decode(Status.self, forKey: .status)
        total = try container.decode(Int.self, forKey: .total)
        settled = try container.decode(Int.self, forKey: .settled)
        error = try container.decodeIfPresent(String.self, forKey: .error)
        createdAtMs = try container.decode(Int64.self, forKey: .createdAtMs)
        updatedAtMs = try container.decode(Int64.self, forKey: .updatedAtMs)
        cursor = try container.decodeIfPresent(String.self, forKey: .cursor).flatMap(LedgerCursor.init(token:))
    }
}
