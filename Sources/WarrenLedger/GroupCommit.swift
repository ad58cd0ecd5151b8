import Foundation
import Metrics
import Synchronization
import Warren

/// Writes the batches of several handlers in one transaction: a handler hands its batch over and waits; one that
/// finds no write running leads: it commits its batch with everything handed over meanwhile, then hands the lead to
/// the first handler that came while it wrote (or, when none did, lets the next one lead). The writing happens in the
/// handlers' own tasks, so it is cancelled with them. Each handler returns (and its message is acked) only once the
/// transaction holding its batch committed. When a group fails, each of its batches is written again on its own, so
/// that only a bad one gets the error (and its message is retried, then dead-lettered).
///
/// Why groups: a commit costs SQLite about the same whatever its size, so one commit per AMQP message caps ingestion
/// well below one per group (the figures: docs/performance.md, "ledger").
final class GroupCommit<Item: Sendable>: Sendable {
    private let write: @Sendable ([Item]) async throws -> Void
    /// What a waiting handler is told: its batch was committed, or it leads the next group.
    private enum Turn { case committed, lead }
    private struct Waiting {
        var items: [Item]
        var continuation: CheckedContinuation<Turn, any Error>
    }
    private struct State {
        var waiting: [Waiting] = []
        var writing = false
    }
    private let state = Mutex(State())

    /// Batches handed over and waiting for a leader (for tests).
    var waitingCount: Int { state.withLock { $0.waiting.count } }

    /// - Parameter write: commits the items of a group in one transaction.
    init(write: @escaping @Sendable ([Item]) async throws -> Void) {
        self.write = write
    }

    /// Returns once `items` are committed.
    /// - Throws: the store's error for the transaction that held them.
    func record(_ items: [Item]) async throws {
        let turn = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Turn, any Error>) in
            let leads = state.withLock { state -> Bool in
                guard state.writing else {
                    state.writing = true
                    return true
                }
                state.waiting.append(Waiting(items: items, continuation: continuation))
                return false
            }
            if leads { continuation.resume(returning: .lead) }
        }
        guard turn == .lead else { return }
        // A cancelled leader (its handler's timeout, a shutdown) writes for nobody else: the others' batches wait for
        // the next leader, and it fails alone.
        let group: [Waiting] =
            Task.isCancelled
            ? []
            : state.withLock { state in
                defer { state.waiting = [] }
                return state.waiting
            }
        var failure: (any Error)?
        do {
            try Task.checkCancellation()
            try await write(items + group.flatMap(\.items))
            for waiting in group { waiting.continuation.resume(returning: .committed) }
        } catch  where Task.isCancelled {
            // Cancelled while writing: nothing was committed; the others' batches go back to wait for the next leader.
            state.withLock { $0.waiting.insert(contentsOf: group, at: 0) }
            failure = error
        } catch  where !group.isEmpty {
            // One bad batch must not fail the others: each on its own, with its own answer.
            do { try await write(items) } catch { failure = error }
            for (index, waiting) in group.enumerated() {
                if Task.isCancelled {
                    // The rest wait for the next leader rather than fail with this one's cancellation.
                    state.withLock { $0.waiting.insert(contentsOf: group[index...], at: 0) }
                    break
                }
                do {
                    try await write(waiting.items)
                    waiting.continuation.resume(returning: .committed)
                } catch {
                    waiting.continuation.resume(throwing: error)
                }
            }
        } catch {
            failure = error
        }
        // Whatever happened, the lead goes on: to the first that came meanwhile, else to the next that comes.
        let next = state.withLock { state -> Waiting? in
            guard !state.waiting.isEmpty else {
                state.writing = false
                return nil
            }
            return state.waiting.removeFirst()
        }
        next?.continuation.resume(returning: .lead)
        if let failure { throw failure }
    }
}

extension GroupCommit where Item == WarrenEvent {
    /// Records events in `store`, and how far behind the newest recorded event is (the ledger's lag).
    convenience init(store: any LedgerStore, queue: String) {
        let lag = Gauge(label: WarrenMetric.ledgerLag.name, dimensions: [("queue", queue)])
        self.init { events in
            try await store.record(events)
            if let oldest = events.lazy.map(\.atMs).min() {
                lag.record(max(0, Date().timeIntervalSince1970 - Double(oldest) / 1000))
            }
        }
    }
}
