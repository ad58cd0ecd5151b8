import Foundation
import Metrics
import Synchronization
import Warren

/// Writes the batches of several handlers in one transaction: a handler hands its batch over and waits; whoever
/// finds no write running becomes the writer and commits everything handed over meanwhile, again and again until
/// nothing waits. Each handler returns (and its message is acked) only once the transaction holding its batch
/// committed. When a group fails, each of its batches is written again on its own, so that only a bad one gets the
/// error (and its message is retried, then dead-lettered).
///
/// A commit costs SQLite a few milliseconds whatever its size: one per AMQP message capped ingestion at about 20,000
/// events/s here, one per group lifts it (docs/performance.md, "ledger").
final class GroupCommit<Item: Sendable>: Sendable {
    private let write: @Sendable ([Item]) async throws -> Void
    private struct Waiting {
        var events: [Item]
        var continuation: CheckedContinuation<Void, any Error>
    }
    private struct State {
        var waiting: [Waiting] = []
        var writing = false
    }
    private let state = Mutex(State())

    /// - Parameter write: commits the items of a group in one transaction.
    init(write: @escaping @Sendable ([Item]) async throws -> Void) {
        self.write = write
    }

    /// Returns once `events` are committed.
    /// - Throws: the store's error for the transaction that held them.
    func record(_ events: [Item]) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let leads = state.withLock { state -> Bool in
                state.waiting.append(Waiting(events: events, continuation: continuation))
                guard !state.writing else { return false }
                state.writing = true
                return true
            }
            if leads { Task { await self.writeUntilNothingWaits() } }
        }
    }

    private func writeUntilNothingWaits() async {
        while true {
            let group = state.withLock { state -> [Waiting]? in
                guard !state.waiting.isEmpty else {
                    state.writing = false
                    return nil
                }
                defer { state.waiting = [] }
                return state.waiting
            }
            guard let group else { return }
            do {
                try await write(group.flatMap(\.events))
                for waiting in group { waiting.continuation.resume() }
            } catch where group.count > 1 {
                // One bad batch must not fail the others: each on its own, with its own answer.
                for waiting in group {
                    do {
                        try await write(waiting.events)
                        waiting.continuation.resume()
                    } catch {
                        waiting.continuation.resume(throwing: error)
                    }
                }
            } catch {
                group[0].continuation.resume(throwing: error)
            }
        }
    }
}

extension GroupCommit where Item == WarrenEvent {
    /// Records events in `store`, and how far behind the newest recorded event is (the ledger's lag).
    convenience init(store: any LedgerStore, queue: String) {
        let lag = Gauge(label: WarrenMetrics.ledgerLag.name, dimensions: [("queue", queue)])
        self.init { events in
            try await store.record(events)
            if let oldest = events.lazy.map(\.atMs).min() {
                lag.record(max(0, Date().timeIntervalSince1970 - Double(oldest) / 1000))
            }
        }
    }
}
