import Foundation
import WarrenLedger

/// What `warren-dashboard` answers on `/health/ready`: ready when its store answers (within ``storeTimeout``) and,
/// when it ingests, its ledger consumes its queue. JSON: `{"status": "ready" | "not_ready", "store": "ok" |
/// "unreachable", "ingest": "consuming" | "not_consuming" | "off"}` — the probe needs no token, so why the store did
/// not answer (which may name its host and user) is logged, not answered.
public struct DashboardReadiness: Encodable, Sendable, Equatable {
    public var status: String
    public var store: String
    public var ingest: String
    /// Why the store did not answer (never a password: the stores' errors carry none); not in the JSON.
    public var storeError: String?

    /// How long the store may take to answer a probe.
    public static let storeTimeout = Duration.seconds(2)

    public var isReady: Bool { status == "ready" }

    enum CodingKeys: String, CodingKey { case status, store, ingest }

    public init(status: String, store: String, ingest: String, storeError: String? = nil) {
        self.status = status
        self.store = store
        self.ingest = ingest
        self.storeError = storeError
    }

    /// Asks the store (its schema version) and the ledger (whether it consumes) now.
    public static func check(store: any LedgerStore, ledger: Ledger?) async -> DashboardReadiness {
        let storeError: String? = await withTaskGroup(of: String?.self) { group in
            group.addTask {
                do {
                    _ = try await store.schemaVersion()
                    return nil
                } catch {
                    return "\(error)"
                }
            }
            group.addTask {
                try? await Task.sleep(for: storeTimeout)
                return "no answer within \(storeTimeout)"
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        let ingest = ledger.map { $0.health.isReady ? "consuming" : "not_consuming" } ?? "off"
        let ready = storeError == nil && ingest != "not_consuming"
        return DashboardReadiness(
            status: ready ? "ready" : "not_ready", store: storeError == nil ? "ok" : "unreachable", ingest: ingest, storeError: storeError)
    }
}
