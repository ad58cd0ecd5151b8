import Crypto
import Foundation
import NIOPosix
import Synchronization
import _CryptoExtras

/// What a signed-in person or a token may do.
public enum DashboardRole: String, Sendable, Codable, Comparable, CaseIterable {
    /// Reads every page and every `GET` of the API.
    case viewer
    /// A viewer who may also replay and purge dead letters.
    case `operator`

    public static func < (lhs: DashboardRole, rhs: DashboardRole) -> Bool {
        lhs == .viewer && rhs == .operator
    }
}

/// Who is making a request: a user of the users file, or the holder of a token.
public struct DashboardIdentity: Sendable, Equatable {
    /// The user's name; `token` or `readonly-token` for the tokens.
    public var name: String
    public var role: DashboardRole

    public init(name: String, role: DashboardRole) {
        self.name = name
        self.role = role
    }
}

/// The users who may sign in to the dashboard, read from a users file: one user a line, `name:role:hash`, where role
/// is `viewer` or `operator` and hash is what ``PasswordHash/make(_:rounds:)`` (or `warren-dashboard hash-password`)
/// gives: `pbkdf2-sha256$<rounds>$<salt, base64>$<key, base64>`. Blank lines and lines starting with `#` are skipped.
///
/// ```
/// # warren-dashboard users
/// ada:operator:pbkdf2-sha256$600000$3q2+7w…$Zm9v…
/// grace:viewer:pbkdf2-sha256$600000$…$…
/// ```
public struct DashboardUsers: Sendable {
    public struct User: Sendable, Equatable {
        public var name: String
        public var role: DashboardRole
        /// The encoded hash, never the password.
        public var passwordHash: String

        public init(name: String, role: DashboardRole, passwordHash: String) {
            self.name = name
            self.role = role
            self.passwordHash = passwordHash
        }
    }

    public let users: [User]

    public init(_ users: [User] = []) {
        self.users = users
    }

    /// Reads a users file.
    /// - Throws: ``DashboardConfigurationError`` naming the line that is not `name:role:hash`, has an unknown role or a
    ///   hash in an unknown format (the line's hash is never quoted); a file system error when it cannot be read.
    public init(contentsOf path: String) throws {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        try self.init(parsing: text, source: path)
    }

    /// Parses the text of a users file; `source` names it in errors.
    public init(parsing text: String, source: String = "users file") throws {
        var users: [User] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let fields = trimmed.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
            let place = "\(source), line \(index + 1)"
            guard fields.count == 3, !fields[0].isEmpty else {
                throw DashboardConfigurationError(message: "\(place): expected name:role:hash")
            }
            guard fields[0].utf8.count <= DashboardAccess.maximumNameLength else {
                throw DashboardConfigurationError(
                    message: "\(place): a user name has at most \(DashboardAccess.maximumNameLength) bytes")
            }
            guard let role = DashboardRole(rawValue: fields[1]) else {
                throw DashboardConfigurationError(
                    message: "\(place): role must be viewer or operator, not '\(fields[1])'")
            }
            guard PasswordHash(encoded: fields[2]) != nil else {
                throw DashboardConfigurationError(
                    message:
                        "\(place): the hash is not pbkdf2-sha256$rounds$salt$key (make one with warren-dashboard hash-password)"
                )
            }
            guard !users.contains(where: { $0.name == fields[0] }) else {
                throw DashboardConfigurationError(message: "\(place): user '\(fields[0])' appears twice")
            }
            users.append(User(name: fields[0], role: role, passwordHash: fields[2]))
        }
        self.users = users
    }
}

/// A configuration the dashboard refuses, with what to change.
public struct DashboardConfigurationError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// A password hash in the users file's format: PBKDF2 with HMAC-SHA256, a random 16-byte salt and a 32-byte key.
public struct PasswordHash: Sendable, Equatable {
    /// OWASP's figure for PBKDF2-HMAC-SHA256 (2023).
    public static let defaultRounds = 600_000
    public let rounds: Int
    public let salt: [UInt8]
    public let key: [UInt8]

    /// `pbkdf2-sha256$<rounds>$<salt>$<key>` (base64), as a users file holds it.
    public var encoded: String {
        "pbkdf2-sha256$\(rounds)$\(Data(salt).base64EncodedString())$\(Data(key).base64EncodedString())"
    }

    /// Parses `encoded`; `nil` when it is not in the format above (or asks for fewer than 100,000 rounds).
    public init?(encoded: String) {
        let parts = encoded.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "pbkdf2-sha256", let rounds = Int(parts[1]), rounds >= 100_000,
            let salt = Data(base64Encoded: String(parts[2])), salt.count >= 8,
            let key = Data(base64Encoded: String(parts[3])), key.count >= 16
        else { return nil }
        self.rounds = rounds
        self.salt = Array(salt)
        self.key = Array(key)
    }

    /// Hashes `password` with a new random salt. CPU-bound (a fraction of a second at the default rounds): call it off
    /// the cooperative pool, as ``verify(_:)`` does.
    public static func make(_ password: String, rounds: Int = defaultRounds) throws -> PasswordHash {
        var generator = SystemRandomNumberGenerator()
        let salt = (0..<16).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let key = try derive(password, salt: salt, rounds: rounds, count: 32)
        return PasswordHash(rounds: rounds, salt: salt, key: key)
    }

    /// A hash no password matches, for spending a real check's time on a name that does not exist.
    init(decoyWithRounds rounds: Int) {
        self.init(rounds: rounds, salt: [UInt8](repeating: 0, count: 16), key: [UInt8](repeating: 0, count: 32))
    }

    private init(rounds: Int, salt: [UInt8], key: [UInt8]) {
        self.rounds = rounds
        self.salt = salt
        self.key = key
    }

    /// Whether `password` is the one hashed, compared in constant time. The derivation runs on the password checks'
    /// own threads (``PasswordChecks``), not on the cooperative pool; this waits for a free one however busy they are.
    public func verify(_ password: String) async -> Bool {
        await PasswordChecks.shared.verify(password, against: self, waitingIfBusy: true) ?? false
    }

    /// Derives the key of `password` with this hash's salt and rounds, and compares it in constant time (CPU-bound).
    func matches(_ password: String) -> Bool {
        guard let derived = try? Self.derive(password, salt: salt, rounds: rounds, count: key.count) else {
            return false
        }
        return ConstantTime.equal(derived, key)
    }

    private static func derive(_ password: String, salt: [UInt8], rounds: Int, count: Int) throws -> [UInt8] {
        let key = try KDF.Insecure.PBKDF2.deriveKey(
            from: Array(password.utf8), salt: salt, using: .sha256, outputByteCount: count,
            unsafeUncheckedRounds: rounds)
        return key.withUnsafeBytes { Array($0) }
    }
}

enum ConstantTime {
    /// Whether `a` equals `b`, in time that depends on their lengths only.
    static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(a.count == b.count ? 0 : 1)
        for index in a.indices { difference |= a[index] ^ (index < b.count ? b[index] : 0) }
        return difference == 0
    }

    /// `count` random bytes from the system's generator, base64url without padding (cookie- and form-safe).
    static func randomToken(bytes count: Int = 32) -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(
                of: "=", with: "")
    }
}

/// Runs password checks (PBKDF2, CPU-bound by design) on a small pool of threads of their own, so that a flood of
/// sign-ins never occupies the threads other work needs (sqlite-nio's queries run on `NIOThreadPool.singleton`), and
/// refuses a check when ``maximumInFlight`` already wait or run: the sign-in answers 503 rather than queueing for ever.
final class PasswordChecks: Sendable {
    /// Half the cores (at least one) check passwords; four checks per thread may wait.
    static let shared = PasswordChecks(threads: max(1, ProcessInfo.processInfo.activeProcessorCount / 2))

    let maximumInFlight: Int
    private let pool: NIOThreadPool
    private let inFlight = Mutex(0)
    private let run = Mutex(0)

    /// The checks this pool has run (what a test counts).
    var checksRun: Int { run.withLock { $0 } }

    init(threads: Int, maximumInFlight: Int? = nil) {
        pool = NIOThreadPool(numberOfThreads: threads)
        pool.start()  // for the process's lifetime, like NIO's singletons
        self.maximumInFlight = maximumInFlight ?? threads * 4
    }

    /// Whether `password` matches `hash`; `nil` when ``maximumInFlight`` checks are under way and `waitingIfBusy` is
    /// `false` (the check did not run).
    func verify(_ password: String, against hash: PasswordHash, waitingIfBusy: Bool = false) async -> Bool? {
        let admitted = inFlight.withLock { count -> Bool in
            guard waitingIfBusy || count < maximumInFlight else { return false }
            count += 1
            return true
        }
        guard admitted else { return nil }
        defer { inFlight.withLock { $0 -= 1 } }
        run.withLock { $0 += 1 }
        return (try? await pool.runIfActive { hash.matches(password) }) ?? false
    }
}

/// Who may use the dashboard: the operator token, the optional read-only token, and the users file's users.
public struct DashboardAccess: Sendable {
    /// The shortest token accepted: 32 characters (`openssl rand -hex 24` gives 48).
    public static let minimumTokenLength = 32
    /// The longest user name: longer names are refused unchecked at sign-in, and in a users file.
    public static let maximumNameLength = 128

    let tokens: [(token: [UInt8], identity: DashboardIdentity)]
    let users: [String: DashboardUsers.User]
    /// Spent on a name that does not exist: as many rounds as the costliest hash of the users file, so that the time a
    /// sign-in takes says nothing of which names exist.
    let decoy: PasswordHash
    /// Where passwords are checked.
    let checks: PasswordChecks

    /// - Parameters:
    ///   - operatorToken: opens everything (`WARREN_DASHBOARD_TOKEN`); `nil` or empty for none.
    ///   - viewerToken: opens reading only (`WARREN_DASHBOARD_READONLY_TOKEN`).
    ///   - users: who may sign in with a name and a password.
    /// - Throws: ``DashboardConfigurationError`` when nobody at all could get in, a token is shorter than
    ///   ``minimumTokenLength`` characters, or both tokens are the same.
    public init(operatorToken: String?, viewerToken: String? = nil, users: DashboardUsers = DashboardUsers()) throws {
        try self.init(operatorToken: operatorToken, viewerToken: viewerToken, users: users, checks: .shared)
    }

    init(operatorToken: String?, viewerToken: String?, users: DashboardUsers, checks: PasswordChecks) throws {
        self.checks = checks
        var tokens: [(token: [UInt8], identity: DashboardIdentity)] = []
        for (variable, token) in [
            ("WARREN_DASHBOARD_TOKEN", operatorToken), ("WARREN_DASHBOARD_READONLY_TOKEN", viewerToken),
        ] {
            guard let token, !token.isEmpty else { continue }
            guard token.count >= Self.minimumTokenLength else {
                throw DashboardConfigurationError(
                    message:
                        "\(variable) is \(token.count) characters long; a token needs at least \(Self.minimumTokenLength) "
                        + "(make one with: openssl rand -hex 24)")
            }
        }
        if let operatorToken, !operatorToken.isEmpty {
            tokens.append((Array(operatorToken.utf8), DashboardIdentity(name: "token", role: .operator)))
        }
        if let viewerToken, !viewerToken.isEmpty {
            guard viewerToken != operatorToken else {
                throw DashboardConfigurationError(message: "the read-only token must differ from the operator token")
            }
            tokens.append((Array(viewerToken.utf8), DashboardIdentity(name: "readonly-token", role: .viewer)))
        }
        guard !tokens.isEmpty || !users.users.isEmpty else {
            throw DashboardConfigurationError(
                message: "set WARREN_DASHBOARD_TOKEN or give a users file: the dashboard is never served to anyone")
        }
        self.tokens = tokens
        self.users = Dictionary(users.users.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let rounds =
            users.users.compactMap { PasswordHash(encoded: $0.passwordHash)?.rounds }.max()
            ?? PasswordHash.defaultRounds
        decoy = PasswordHash(decoyWithRounds: rounds)
    }

    /// The identity a bearer token stands for; every token is compared, in constant time.
    func identity(forToken candidate: String) -> DashboardIdentity? {
        let bytes = Array(candidate.utf8)
        var found: DashboardIdentity?
        for entry in tokens where ConstantTime.equal(bytes, entry.token) { found = entry.identity }
        return found
    }

    /// What became of a sign-in.
    enum SignIn: Equatable {
        case signedIn(DashboardIdentity)
        case refused
        /// Too many password checks under way: nothing was checked.
        case busy
    }

    /// Checks a sign-in: a user's name and password, or (with the name left empty) a token as the password.
    func signIn(name: String, password: String) async -> SignIn {
        if name.isEmpty { return identity(forToken: password).map(SignIn.signedIn) ?? .refused }
        guard name.utf8.count <= Self.maximumNameLength, password.utf8.count <= 4_096 else { return .refused }
        guard let user = users[name], let hash = PasswordHash(encoded: user.passwordHash) else {
            // The same work as a real check, so that a guess does not learn which names exist from the time taken.
            return await checks.verify(password, against: decoy) == nil ? .busy : .refused
        }
        switch await checks.verify(password, against: hash) {
        case nil: return .busy
        case false?: return .refused
        case true?: return .signedIn(DashboardIdentity(name: user.name, role: user.role))
        }
    }

    /// Whether `name` is a user of the users file (a refused sign-in logs the name only then: an unknown name may be
    /// a password typed in the wrong field).
    func isUser(_ name: String) -> Bool { users[name] != nil }
}
