import Foundation
import Logging
import Testing
import Warren
import WarrenTestSupport

@testable import WarrenLedger

/// `sslmode` and `sslrootcert` against the test's PostgreSQL, which serves TLS with a certificate made by openssl for
/// `IP:127.0.0.1` and `DNS:localhost`, and refuses its encrypted-only role without TLS.
@Suite("The ledger's PostgreSQL over TLS", .tags(.postgres), .needs(.postgres))
struct PostgresTLSTests {
    /// Opens a store for `url` and migrates it (the store connects once on its own first, for a clear error).
    func open(_ url: String) async throws {
        let store = try PostgresLedgerStore(url: url, logger: TestBroker.quietLogger())
        try await store.withRunning { try await store.migrate() }
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

    @Test func onlyAConnectionInClearBeyondThisMachineIsWarnedAbout() async throws {
        #expect(PostgresLedgerDatabase.warnsInClear(encrypted: false, host: "db.internal"))
        #expect(PostgresLedgerDatabase.warnsInClear(encrypted: false, host: "10.0.0.5"))
        #expect(!PostgresLedgerDatabase.warnsInClear(encrypted: true, host: "db.internal"))
        #expect(!PostgresLedgerDatabase.warnsInClear(encrypted: false, host: "127.0.0.1"))
        let postgres = try await LocalPostgres.shared()
        let lines = LogLines()
        let logger = Logger(label: "tls-test") { _ in CapturingHandler(lines: lines) }
        // 127.0.0.1 is this machine: no warning even in clear.
        let local = try PostgresLedgerStore(
            url: try await postgres.newDatabaseURL() + "?sslmode=disable", logger: logger)
        try await local.withRunning { try await local.migrate() }
        #expect(!lines.all.contains { "\($0["message"] ?? "")".contains("not encrypted") })
        #expect(PostgresLedgerDatabase.explain(CancellationError()).contains("CancellationError"))
    }
}
