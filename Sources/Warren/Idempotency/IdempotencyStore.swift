import Synchronization

/// Remembers which message ids a registration has handled, so a redelivered duplicate is acknowledged without running
/// the handler again. See `docs/at-least-once.md` for where duplicates come from and what this does and does not
/// guarantee.
public protocol IdempotencyStore: Sendable {
    /// Whether `messageID` was recorded as handled for `scope` (the queue and message type).
    func contains(_ messageID: String, scope: String) async throws -> Bool
    /// Records `messageID` as handled for `scope`; called after the handler succeeded, before the ack.
    func record(_ messageID: String, scope: String) async throws
}

/// An in-memory store of the most recent `capacity` message ids per scope (oldest forgotten first). It lives and dies
/// with the process: it catches the duplicates a broker redelivers to the same worker (a lost ack, a channel closed
/// mid-handling), not those that reach another worker or arrive after a restart. Use a shared store (a database table,
/// Redis) for those.
public final class InMemoryIdempotencyStore: IdempotencyStore {
    private struct Scope {
        var ids: Set<String> = []
        var order: [String] = []
        var head = 0
    }

    public let capacity: Int
    private let scopes = Mutex<[String: Scope]>([:])

    public init(capacity: Int = 10_000) {
        precondition(capacity > 0, "the store must hold at least one id")
        self.capacity = capacity
    }

    public func contains(_ messageID: String, scope: String) async throws -> Bool {
        scopes.withLock { $0[scope]?.ids.contains(messageID) ?? false }
    }

    public func record(_ messageID: String, scope: String) async throws {
        scopes.withLock { scopes in
            var entry = scopes[scope] ?? Scope()
            guard entry.ids.insert(messageID).inserted else { return }
            entry.order.append(messageID)
            if entry.ids.count > capacity {
                entry.ids.remove(entry.order[entry.head])
                entry.head += 1
                if entry.head > capacity {
                    entry.order.removeFirst(entry.head)
                    entry.head = 0
                }
            }
            scopes[scope] = entry
        }
    }
}
