import Foundation
import Testing

@testable import WarrenLedger

/// `sslmode` and `sslrootcert` in the ledger's PostgreSQL URL, checked before any connection (`PostgresTLSTests`
/// connects with them).
@Suite("The ledger's PostgreSQL TLS settings")
struct PostgresTLSSettingsTests {
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
}
