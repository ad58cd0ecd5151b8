import Foundation
import Logging
import Testing
import WarrenTestSupport
import Warren
@testable import WarrenLedger
import WarrenDashboard

/// `sslmode` and `sslrootcert` against the test's PostgreSQL, which serves TLS with a certificate made by openssl for
/// `IP:127.0.0.1` and `DNS:localhost`, and refuses its encrypted-only role without TLS.
@Suite("The ledger's PostgreSQL over TLS")
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
        try await open("\(try await postgres.newEncryptedOnlyDatabaseURL(host: "localhost"))?sslmode=verify-full&sslrootcert=\(postgres.rootCertificate)")
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
        await #expect(throws: LedgerStoreError.self) { try await open("\(url)?sslmode=require&sslrootcert=\(postgres.otherRootCertificate)") }
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
            ("sslmode=verify", "sslmode must be one of"), ("sslrootcert=/no/such/file.pem", "cannot read"), ("ssl=true", "unknown parameter"),
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
        #expect(PostgresLedgerStore.warnsInClear(encrypted: false, host: "db.internal"))
        #expect(PostgresLedgerStore.warnsInClear(encrypted: false, host: "10.0.0.5"))
        #expect(!PostgresLedgerStore.warnsInClear(encrypted: true, host: "db.internal"))
        #expect(!PostgresLedgerStore.warnsInClear(encrypted: false, host: "127.0.0.1"))
        let postgres = try await LocalPostgres.shared()
        let lines = TracingBrokerTests.LogLines()
        let logger = Logger(label: "tls-test") { _ in TracingBrokerTests.CapturingHandler(lines: lines) }
        // 127.0.0.1 is this machine: no warning even in clear.
        let local = try PostgresLedgerStore(url: try await postgres.newDatabaseURL() + "?sslmode=disable", logger: logger)
        try await local.migrate()
        try await local.close()
        #expect(!lines.all.contains { "\($0["message"] ?? "")".contains("not encrypted") })
        #expect(PostgresLedgerStore.explain(CancellationError()).contains("CancellationError"))
    }
}

/// `warren-dashboard`'s `/health/ready`, against a store that answers and one that does not.
@Suite("The dashboard's readiness")
struct DashboardReadinessTests {
    @Test func theDashboardIsNotReadyWhileItsStoreDoesNotAnswer() async throws {
        let away = try PostgresLedgerStore(url: "postgres://warren@127.0.0.1:\(try freeTCPPort())/ledger", logger: TestBroker.quietLogger())
        let started = ContinuousClock.now
        let readiness = await DashboardReadiness.check(store: away, ledger: nil)
        #expect(!readiness.isReady && readiness.store == "unreachable" && readiness.ingest == "off", "\(readiness)")
        #expect(ContinuousClock.now - started < .seconds(10), "answered in \(ContinuousClock.now - started)")
        try? await away.close()
        let here = try PostgresLedgerStore(url: try await LocalPostgres.shared().newDatabaseURL(), logger: TestBroker.quietLogger())
        try await here.migrate()
        #expect(await DashboardReadiness.check(store: here, ledger: nil) == DashboardReadiness(status: "ready", store: "ok", ingest: "off"))
        try await here.close()
    }
}
