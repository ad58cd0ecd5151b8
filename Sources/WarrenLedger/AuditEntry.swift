/// One operation a person or a token ran from the dashboard (a replay, a purge), as the audit log keeps it.
public struct AuditEntry: Sendable, Equatable, Codable {
    /// Set by the store; 0 before it is recorded.
    public var id: Int64
    /// Milliseconds since 1970.
    public var atMs: Int64
    /// Who: a users file's name, `token` or `readonly-token`.
    public var actor: String
    /// `viewer` or `operator`.
    public var role: String
    /// `replay`, `purge`, … (refused attempts too: see ``outcome``).
    public var action: String
    /// What it applied to: a message id, a failure group, a filter, as text.
    public var target: String
    /// How many dead letters it touched.
    public var count: Int
    /// `done`, `refused` or `failed: <why>`.
    public var outcome: String
    /// The request's id, the replay mark its copies carry.
    public var requestID: String

    public init(
        id: Int64 = 0, atMs: Int64, actor: String, role: String, action: String, target: String, count: Int,
        outcome: String,
        requestID: String
    ) {
        self.id = id
        self.atMs = atMs
        self.actor = actor
        self.role = role
        self.action = action
        self.target = target
        self.count = count
        self.outcome = outcome
        self.requestID = requestID
    }

    enum CodingKeys: String, CodingKey {
        case id, actor, role, action, target, count, outcome
        case atMs = "at_ms"
        case requestID = "request_id"
    }
}
