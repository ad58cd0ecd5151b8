import Foundation
import ServiceLifecycle
import Testing
import WarrenDashboard
import WarrenTestSupport

@testable import WarrenLedger

/// `warren-dashboard`'s `/health/ready`, against a store that answers, one that refuses and one that hangs.
@Suite("The dashboard's readiness", .tags(.postgres), .needs(.postgres))
struct DashboardReadinessTests {
    /// Runs `store` and a monitor of it in a service group (the store first, as docs/ledger.md says) while `body`
    /// runs, then shuts the group down gracefully: the monitor then says the dashboard is stopping.
    private func monitoring(_ store: any LedgerStore, _ body: (DashboardReadinessMonitor) async throws -> Void)
        async throws
    {
        let monitor = DashboardReadinessMonitor(
            store: store, ledger: nil, interval: .milliseconds(200), logger: TestBroker.quietLogger())
        #expect(
            monitor.readiness() == DashboardReadiness(status: "not_ready", store: "unchecked", ingest: "off"),
            "before its first answer")
        let group = ServiceGroup(configuration: .init(services: [store, monitor], logger: TestBroker.quietLogger()))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await body(monitor)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(monitor.readiness() == DashboardReadiness(status: "not_ready", store: "stopping", ingest: "off"))
    }

    @Test func theDashboardIsNotReadyWhileItsStoreRefusesOrHangsAndIsOnceItAnswers() async throws {
        let refusing = try PostgresLedgerStore(
            url: "postgres://warren@127.0.0.1:\(try freeTCPPort())/ledger", logger: TestBroker.quietLogger())
        try await monitoring(refusing) { monitor throws in
            #expect(try await eventually(timeout: .seconds(10)) { monitor.readiness().store == "unreachable" })
            #expect(monitor.readiness().storeError?.isEmpty == false)
        }
        try? await refusing.close()

        // A server that takes the connection and never answers: the probe answers at once, unreachable after the timeout.
        let silent = try SilentListener()
        let hanging = try PostgresLedgerStore(
            url: "postgres://warren@127.0.0.1:\(silent.port)/ledger?sslmode=disable", logger: TestBroker.quietLogger())
        try await monitoring(hanging) { monitor throws in
            #expect(
                try await eventually(timeout: .seconds(8)) {
                    monitor.readiness().storeError?.contains("no answer within") == true
                },
                "\(monitor.readiness())")
            #expect(!monitor.readiness().isReady)
        }
        try? await hanging.close()

        // Asked before its ledger migrated it (as at the dashboard's start), then ready once it is.
        let here = try PostgresLedgerStore(
            url: try await LocalPostgres.shared().newDatabaseURL(), logger: TestBroker.quietLogger())
        let sqlitePath = FileManager.default.temporaryDirectory.appendingPathComponent(
            "readiness-\(UUID().uuidString).sqlite"
        ).path
        defer {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: sqlitePath + suffix) }
        }
        let sqlite = try await SQLiteLedgerStore(path: sqlitePath, logger: TestBroker.quietLogger())
        for store in [here, sqlite] as [any LedgerStore] {
            try await monitoring(store) { monitor throws in
                #expect(try await eventually { monitor.readiness().store == "unreachable" }, "\(monitor.readiness())")
                try await store.migrate()
                #expect(
                    try await eventually {
                        monitor.readiness() == DashboardReadiness(status: "ready", store: "ok", ingest: "off")
                    },
                    "\(monitor.readiness())")
            }
            try await store.close()
        }
    }
}
