import Foundation
import Warren

/// Runs `body` beside `services` (each a `run()`), then cancels them and waits for their ends; returns what `body`
/// returns.
package func whileRunning<T>(
    _ services: [@Sendable () async throws -> Void], _ body: () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: Void.self, returning: T.self) { group in
        for service in services { group.addTask { try await service() } }
        defer { group.cancelAll() }
        return try await body()
    }
}

/// The message of a recurring job in the scheduling tests.
package struct TestTick: WarrenMessage {
    package static let messageType = "test.tick"
    package var at: Date

    package init(at: Date) { self.at = at }
}
