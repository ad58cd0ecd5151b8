import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Warren
import WarrenLedger

/// What `warren-dashboard` answers on `/health/ready`: ready when its store answers (within ``storeTimeout``) and,
/// when it ingests, its ledger consumes its queue. JSON: `{"status": "ready" | "not_ready", "store": "ok" |
/// "unreachable" | "unchecked" | "stopping", "ingest": "consuming" | "not_consuming" | "off", "leadership": [{"work",
/// "role", "since"}]}` — the probe needs no token, so why
/// the store did not answer (which may name its host and user) is logged, not answered.
public struct DashboardReadiness: Encodable, Sendable, Equatable {
    public var status: String
    public var store: String
    public var ingest: String
    /// Why the store did not answer (never a password: the stores' errors carry none); not in the JSON.
    public var storeError: String?
    /// The ledger's pruning election (`ledger-prune.<store identity>`): whether this process prunes the store
    /// (`leader`) or another does (`standby`, ready all the same). Empty when it does not ingest or keeps everything.
    public var leadership: [Leadership]

    public typealias Leadership = LeadershipReport

    /// How long the store may take to answer before it counts as unreachable.
    public static let storeTimeout = Duration.seconds(2)

    public var isReady: Bool { status == "ready" }

    enum CodingKeys: String, CodingKey { case status, store, ingest, leadership }

    public init(
        status: String, store: String, ingest: String, storeError: String? = nil,
        leadership: [Leadership] = []
    ) {
        self.status = status
        self.store = store
        self.ingest = ingest
        self.storeError = storeError
        self.leadership = leadership
    }
}

/// Asks the store whether it answers (its schema version), one question at a time, every `interval`, inside its
/// `run()`; ``readiness()`` answers at once from the latest answer, so a probe never waits on the store. A question
/// unanswered within ``DashboardReadiness/storeTimeout`` is cancelled and the store counts as unreachable until a later
/// question is answered; the store's going away (with why) and coming back are logged once each. Once a graceful
/// shutdown begins the dashboard is not ready.
public final class DashboardReadinessMonitor: Service, Sendable {
    private struct State {
        var lastError: String?
        var answeredOnce = false
        var stopping = false
    }

    private let store: any LedgerStore
    private let ledger: Ledger?
    private let interval: Duration
    private let logger: Logger
    private let state = Mutex(State())

    /// - Parameters:
    ///   - ledger: the ledger that ingests into `store`; `nil` when the dashboard does not ingest.
    ///   - interval: the time between one answer and the next question.
    ///   - logger: where the store's going away (with why) and coming back are logged, once each time.
    public init(store: any LedgerStore, ledger: Ledger?, interval: Duration = .seconds(2), logger: Logger) {
        self.store = store
        self.ledger = ledger
        self.interval = interval
        self.logger = logger
    }

    /// Asks until the service group shuts down (or the task is cancelled).
    public func run() async throws {
        await withGracefulShutdownHandler {
            while !Task.isCancelled && !state.withLock({ $0.stopping }) {
                await askOnce()
                try? await Task.sleep(for: interval)
            }
        } onGracefulShutdown: {
            self.state.withLock { $0.stopping = true }
        }
    }

    /// One question, cancelled when it takes longer than the timeout.
    private func askOnce() async {
        let store = store
        let failure: String? = await withTaskGroup(of: String?.self) { group in
            group.addTask {
                do {
                    _ = try await store.schemaVersion()
                    return nil
                } catch {
                    return Task.isCancelled ? "no answer within \(DashboardReadiness.storeTimeout)" : "\(error)"
                }
            }
            // The timer: once it fires, the question is cancelled (and answers with the line above).
            group.addTask {
                try? await Task.sleep(for: DashboardReadiness.storeTimeout)
                return "no answer within \(DashboardReadiness.storeTimeout)"
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        let wasAway = state.withLock { state in
            defer {
                state.lastError = failure
                state.answeredOnce = true
            }
            return state.lastError != nil
        }
        if let failure, !wasAway {
            logger.warning("the store does not answer the readiness probe", metadata: ["error": "\(failure)"])
        } else if failure == nil, wasAway {
            logger.notice("the store answers the readiness probe again")
        }
    }

    /// The readiness now: `unchecked` (not ready) before the store's first answer, `unreachable` while its last
    /// question failed or went unanswered, `stopping` once a graceful shutdown began.
    public func readiness() -> DashboardReadiness {
        let (store, storeError): (String, String?) = state.withLock { state in
            if state.stopping { return ("stopping", nil) }
            if let error = state.lastError { return ("unreachable", error) }
            return (state.answeredOnce ? "ok" : "unchecked", nil)
        }
        let ingest = ledger.map { $0.health.isReady ? "consuming" : "not_consuming" } ?? "off"
        let ready = store == "ok" && ingest != "not_consuming"
        let leadership = (ledger?.pruning).map { [$0.report] } ?? []
        return DashboardReadiness(
            status: ready ? "ready" : "not_ready", store: store, ingest: ingest, storeError: storeError,
            leadership: leadership)
    }
}
