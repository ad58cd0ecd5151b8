import Testing
import WarrenDashboard

/// The dashboard's users file and its password hashes, read and checked in this process (`DashboardSessionTests`
/// signs in to a running dashboard with them).
@Suite("The dashboard's users file and password hashes")
struct DashboardUsersTests {
    @Test func aUsersFileIsCheckedLineByLine() throws {
        let hash = try PasswordHash.make("pw", rounds: 100_000).encoded
        let users = try DashboardUsers(parsing: "# comment\n\nada:operator:\(hash)\ngrace:viewer:\(hash)\n")
        #expect(users.users.map(\.name) == ["ada", "grace"] && users.users.map(\.role) == [.operator, .viewer])
        for bad in [
            "ada:admin:\(hash)", "ada:operator", "ada:operator:plaintext",
            "ada:operator:pbkdf2-sha256$1000$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==",
            "ada:viewer:\(hash)\nada:operator:\(hash)",
        ] {
            #expect(throws: DashboardConfigurationError.self, "\(bad)") { try DashboardUsers(parsing: bad) }
        }
        do {
            _ = try DashboardUsers(parsing: "ada:operator:secret-in-the-wrong-place")
        } catch let error as DashboardConfigurationError {
            #expect(error.message.contains("line 1") && !error.message.contains("secret-in-the-wrong-place"))
        }
    }

    @Test func aPasswordHashVerifiesOnlyItsPassword() async throws {
        let hash = try PasswordHash.make("correct", rounds: 100_000)
        let parsed = try #require(PasswordHash(encoded: hash.encoded))
        #expect(await parsed.verify("correct"))
        #expect(await !parsed.verify("Correct"))
        #expect(await !parsed.verify(""))
        #expect(try PasswordHash.make("correct", rounds: 100_000).salt != hash.salt, "a new salt each time")
    }
}
