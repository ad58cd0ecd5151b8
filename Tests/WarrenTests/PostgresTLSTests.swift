import Foundation
import Logging
import ServiceLifecycle
import Testing
import Warren
import WarrenDashboard
import WarrenTestSupport

@testable import WarrenLedger

/// `sslmode` and `sslrootcert` against the test's PostgreSQL, which serves TLS with a certificate made by openssl for
/// `IP:127.0.0.1` and `DNS:localhost`, and refuses its encrypted-only role without TLS.
@Suite("The ledger's PostgreSQL over TLS", .tags(.postgres), .needs(.postgres))
struct PostgresTLSTests {
    /// Opens a store for `url` and migrates it (the store connects once on its own first, for a clear error).
    func open(_ url: String) async throws {
        let store = try PostgresLedgerStore(url: url, logger: TestBroker.quietLogger())
        do {
            try await store.migrate()
            try await store.close()
        } catch {
            try? await store.close()
            throw error
        }
    }

    @Test func verifyFullConnectsWithTheRightRootAndFailsClearlyWithAnother() async throws {
        let postgres = try await LocalPostgres.shared()
        let url = try await postgres.newEncryptedOnlyDatabaseURL()
        try await open("\(url)?sslmode=verify-full&sslrootcert=\(postgres.rootCertificate)")
        try await open(
            "\(try await postgres.newEncryptedOnlyDatabaseURL(host: "localhost"))?sslmode=verify-full&sslrootcert=\(postgres.rootCertificate)"
        )
        try await open("\(url)?sslmode=verify-ca&sslrootcert=\(postgres.rootCertificate)")
        await #expect {
            try await open("\(url)?sslmode=verify-full&sslrootcert=\(postgres.otherRootCertificate)")
        } throws: { error in
            let error = error as? LedgerStoreError
            return error?.code == .cannotConnect && error?.message.contains("sslmode=verify-full") == true
                && error?.message.uppercased().contains("CERTIFICATE") == true
        }
        // require encrypts without checking; with a root given it checks it, as libpq does.
        try await open("\(url)?sslmode=require")
        await #expect(throws: LedgerStoreError.self) {
            try await open("\(url)?sslmode=require&sslrootcert=\(postgres.otherRootCertificate)")
        }
    }

    @Test func disableAgainstAServerThatDemandsTLSFailsWithTheServersReason() async throws {
        let postgres = try await LocalPostgres.shared()
        let url = try await postgres.newEncryptedOnlyDatabaseURL()
        await #expect {
            try await open("\(url)?sslmode=disable")
        } throws: { error in
            let error = error as? LedgerStoreError
            return error?.code == .cannotConnect && error?.message.contains("no encryption") == true
        }
        try await open(url)  // prefer, the default, encrypts when the server offers it
    }

    @Test func urlParametersAreCheckedAtOnce() throws {
        for (query, words) in [
            ("sslmode=verify", "sslmode must be one of"), ("sslrootcert=/no/such/file.pem", "cannot read"),
            ("ssl=true", "unknown parameter"),
        ] {
            #expect {
                try PostgresLedgerStore(url: "postgres://u:secret@db.example:5432/ledger?\(query)")
            } throws: { error in
                "\(error)".contains(words) && !"\(error)".contains("secret")
            }
        }
        #expect(try PostgresTLSMode(query: [URLQueryItem(name: "sslmode", value: "require")]).requiresEncryption)
        #expect(try !PostgresTLSMode(query: []).requiresEncryption)
    }

    @Test func onlyAConnectionInClearBeyondThisMachineIsWarnedAbout() async throws {
        #expect(PostgresLedgerDatabase.warnsInClear(encrypted: false, host: "db.internal"))
        #expect(PostgresLedgerDatabase.warnsInClear(encrypted: false, host: "10.0.0.5"))
        #expect(!PostgresLedgerDatabase.warnsInClear(encrypted: true, host: "db.internal"))
        #expect(!PostgresLedgerDatabase.warnsInClear(encrypted: false, host: "127.0.0.1"))
        let postgres = try await LocalPostgres.shared()
        let lines = TracingBrokerTests.LogLines()
        let logger = Logger(label: "tls-test") { _ in TracingBrokerTests.CapturingHandler(lines: lines) }
        // 127.0.0.1 is this machine: no warning even in clear.
        let local = try PostgresLedgerStore(
            url: try await postgres.newDatabaseURL() + "?sslmode=disable", logger: logger)
        try await local.migrate()
        try await local.close()
        #expect(!lines.all.contains { "\($0["message"] ?? "")".contains("not encrypted") })
        #expect(PostgresLedgerDatabase.explain(CancellationError()).contains("CancellationError"))
    }
}

/// `warren-dashboard`'s `/health/ready`, against a store that answers, one that refuses and one that hangs.
@Suite("The dashboard's readiness", .tags(.postgres), .needs(.postgres))
struct DashboardReadinessTests {
    /// Runs a monitor of `store` in a service group while `body` runs, then shuts the group down gracefully: the
    /// monitor then says the dashboard is stopping.
    private func monitoring(_ store: any LedgerStore, _ body: (DashboardReadinessMonitor) async throws -> Void)
        async throws
    {
        let monitor = DashboardReadinessMonitor(
            store: store, ledger: nil, interval: .milliseconds(200), logger: TestBroker.quietLogger())
        #expect(
            monitor.readiness() == DashboardReadiness(status: "not_ready", store: "unchecked", ingest: "off"),
            "before its first answer")
        let group = ServiceGroup(configuration: .init(services: [monitor], logger: TestBroker.quietLogger()))
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
