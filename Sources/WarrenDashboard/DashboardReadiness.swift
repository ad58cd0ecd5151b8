import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import WarrenLedger

/// What `warren-dashboard` answers on `/health/ready`: ready when its store answers (within ``storeTimeout``) and,
/// when it ingests, its ledger consumes its queue. JSON: `{"status": "ready" | "not_ready", "store": "ok" |
/// "unreachable" | "unchecked", "ingest": "consuming" | "not_consuming" | "off"}` — the probe needs no token, so why
/// the store did not answer (which may name its host and user) is logged, not answered.
public struct DashboardReadiness: Encodable, Sendable, Equatable {
    public var status: String
    public var store: String
    public var ingest: String
    /// Why the store did not answer (never a password: the stores' errors carry none); not in the JSON.
    public var storeError: String?

    /// How long the store may take to answer before it counts as unreachable.
    public static let storeTimeout = Duration.seconds(2)

    public var isReady: Bool { status == "ready" }

    enum CodingKeys: String, CodingKey { case status, store, ingest }

    public init(status: String, store: String, ingest: String, storeError: String? = nil) {
        self.status = status
        self.store = store
        self.ingest = ingest
        self.storeError = storeError
    }
}

/// Asks the store whether it answers (its schema version), one question at a time, every `interval`, inside its
/// `run()`; ``readiness()`` answers at once from the latest answer. A store that hangs therefore never holds a probe
/// past ``DashboardReadiness/storeTimeout`` nor piles up one query per probe: a question unanswered for that long
/// makes the store `unreachable` until it is answered.
public final class DashboardReadinessMonitor: Service, Sendable {
    private struct State {
        var askedAt: ContinuousClock.Instant?
        var lastError: String?
        var answeredOnce = false
        var hangLogged = false
    }

    private let store: any LedgerStore
    private let ledger: Ledger?
    private let interval: Duration
    private let logger: Logger
    private let state = Mutex(State())

    /// - Parameters:
    ///   - ledger: the ledger that ingests into `store`; `nil` when the dashboard does not ingest.
    ///   - interval: the time between one answer and the next question.
    ///   - logger: where a store that stops answering (with why) and answers again is logged, once each time.
    public init(store: any LedgerStore, ledger: Ledger?, interval: Duration = .seconds(2), logger: Logger) {
        self.store = store
        self.ledger = ledger
        self.interval = interval
        self.logger = logger
    }

    /// Asks until the service group shuts down (or the task is cancelled).
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.askOnce()
                try? await Task.sleep(for: self.interval)
            }
        }
    }

    private func askOnce() async {
        state.withLock { $0.askedAt = .now }
        let failure: String?
        do {
            _ = try await store.schemaVersion()
            failure = nil
        } catch {
            failure = "\(error)"
        }
        let wasAway = state.withLock { state in
            defer {
                state.askedAt = nil
                state.lastError = failure
                state.answeredOnce = true
                state.hangLogged = false
            }
            return state.lastError != nil || state.hangLogged
        }
        if let failure, !wasAway {
            logger.warning("the store does not answer the readiness probe", metadata: ["error": "\(failure)"])
        } else if failure == nil, wasAway {
            logger.notice("the store answers the readiness probe again")
        }
    }

    /// The readiness now: `unchecked` (not ready) before the store's first answer, `unreachable` while its last answer
    /// was an error or a question has waited longer than ``DashboardReadiness/storeTimeout``.
    public func readiness(now: ContinuousClock.Instant = .now) -> DashboardReadiness {
        let (store, storeError, newHang): (String, String?, Bool) = state.withLock { state in
            if let asked = state.askedAt, now - asked > DashboardReadiness.storeTimeout {
                defer { state.hangLogged = true }
                return ("unreachable", "no answer within \(DashboardReadiness.storeTimeout)", !state.hangLogged && state.lastError == nil)
            }
            if let error = state.lastError { return ("unreachable", error, false) }
            return (state.answeredOnce ? "ok" : "unchecked", nil, false)
        }
        if newHang, let storeError { logger.warning("the store does not answer the readiness probe", metadata: ["error": "\(storeError)"]) }
        let ingest = ledger.map { $0.health.isReady ? "consuming" : "not_consuming" } ?? "off"
        let ready = store == "ok" && ingest != "not_consuming"
        return DashboardReadiness(status: ready ? "ready" : "not_ready", store: store, ingest: ingest, storeError: storeError)
    }
}
