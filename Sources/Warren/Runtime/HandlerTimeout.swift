/// A handler ran past its timeout (``HandlerOptions/timeout``): counted as a transient failure.
struct HandlerTimedOut: Error {
    var limit: Duration
}

/// Runs `operation`, cancelling it and throwing ``HandlerTimedOut`` once `limit` has passed.
func withTimeout(_ limit: Duration?, _ operation: @escaping @Sendable () async throws -> Void) async throws {
    guard let limit else { return try await operation() }
    try await withThrowingTaskGroup(of: Bool.self) { group in
        group.addTask {
            try await operation()
            return true
        }
        group.addTask {
            try await Task.sleep(for: limit)
            return false
        }
        defer { group.cancelAll() }
        guard let finished = try await group.next() else { return }
        if !finished { throw HandlerTimedOut(limit: limit) }
    }
}
