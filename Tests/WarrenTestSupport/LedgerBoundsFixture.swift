import Warren

/// What the ledger's bounds suites build on: a fixed now and a job's event on `emails` (`LedgerBoundsTests` needs no
/// server; `LedgerBoundsPostgresTests` runs on both stores).
package protocol LedgerBoundsFixture {}

extension LedgerBoundsFixture {
    package var now: Int64 { 1_795_000_000_000 }

    package func event(_ kind: WarrenEvent.Kind, _ id: String, at: Int64, error: String? = nil) -> WarrenEvent {
        WarrenEvent(
            event: kind, messageID: id, type: "email.welcome", queue: "emails", attempt: 1, atMs: at, error: error)
    }
}
