import Testing
import WarrenLedger

@testable import WarrenDashboard

@Suite("The jobs API")
struct LedgerAPITests {
    func query(_ pairs: [(String, String)]) throws -> JobQuery {
        try LedgerAPI.query(from: pairs.map { (key: $0.0, value: $0.1) })
    }

    @Test func aSearchIsReadFromItsParametersAndBadOnesAreNamed() throws {
        let parsed = try query([
            ("queue", "emails"), ("type", "email.welcome"), ("status", "dead_lettered"),
            ("since", "2026-11-29T10:00:00Z"),
            ("until", "1795996800000"), ("limit", "20"), ("after", LedgerCursor(atMs: 5, messageID: "m").token),
        ])
        #expect(
            parsed
                == JobQuery(
                    queue: "emails", type: "email.welcome", state: .deadLettered, sinceMs: 1_795_946_400_000,
                    untilMs: 1_795_996_800_000,
                    limit: 20, after: LedgerCursor(atMs: 5, messageID: "m")))
        #expect(try query([]) == JobQuery())
        #expect(try LedgerAPI.time("24h", "since", nowMs: 100_000_000) == 100_000_000 - 86_400_000)
        #expect(try LedgerAPI.time("90s", "since", nowMs: 100_000) == 10_000)
        #expect(throws: LedgerAPI.BadRequest.self) { try LedgerAPI.time("24x", "since") }
        for (bad, names) in [
            (("status", "done"), "status"), (("limit", "0"), "limit"), (("limit", "501"), "limit"),
            (("since", "yesterday"), "since"),
            (("after", "!!"), "after"), (("offset", "10"), "offset"),
        ] {
            #expect {
                try query([bad])
            } throws: { error in
                (error as? LedgerAPI.BadRequest)?.message.contains(names) == true
            }
        }
    }

    @Test func aDeadLetterSearchIsReadFromItsParameters() throws {
        let parsed = try LedgerAPI.deadLetterQuery(from: [
            (key: "group", value: "4ba209d319ac59eb"), (key: "queue", value: "emails"), (key: "limit", value: "10"),
        ])
        #expect(parsed == DeadLetterQuery(groupID: "4ba209d319ac59eb", queue: "emails", limit: 10))
        #expect(throws: LedgerAPI.BadRequest.self) {
            try LedgerAPI.deadLetterQuery(from: [(key: "status", value: "dead_lettered")])
        }
        #expect(throws: LedgerAPI.BadRequest.self) { try LedgerAPI.failureQuery(from: [(key: "after", value: "x")]) }
    }

    @Test func tokensAreComparedWholeAndGiveTheirRole() throws {
        let secret = "s3cret-" + String(repeating: "0123456789", count: 3)
        let viewer = "viewer-" + String(repeating: "abcdefghij", count: 3)
        let access = try DashboardAccess(operatorToken: secret, viewerToken: viewer)
        #expect(access.identity(forToken: secret) == DashboardIdentity(name: "token", role: .operator))
        #expect(access.identity(forToken: viewer) == DashboardIdentity(name: "readonly-token", role: .viewer))
        for wrong in [String(secret.dropLast()), secret + "!", "", secret.uppercased(), viewer + "s"] {
            #expect(access.identity(forToken: wrong) == nil, "\(wrong)")
        }
        #expect(throws: DashboardConfigurationError.self) { try DashboardAccess(operatorToken: nil) }
        #expect(throws: DashboardConfigurationError.self) {
            try DashboardAccess(operatorToken: secret, viewerToken: secret)
        }
    }
}
