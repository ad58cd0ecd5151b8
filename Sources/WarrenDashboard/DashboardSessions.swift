import Foundation
import Hummingbird
import WarrenHTTP

/// The request context of the dashboard's routes: who is asking, once ``DashboardAccessMiddleware`` has let the
/// request in.
public struct DashboardRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Who is asking; `nil` only on the open routes (`/health`, the sign-in form, the stylesheet).
    public var identity: DashboardIdentity?
    /// The browser session the request came with; `nil` for a bearer token.
    var session: DashboardSession?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }
}

/// A signed-in browser: the identity, and the token its forms must carry back (CSRF).
struct DashboardSession: Sendable {
    var id: String
    var identity: DashboardIdentity
    var csrfToken: String
    var createdAt: ContinuousClock.Instant
    var lastSeenAt: ContinuousClock.Instant
}

/// The signed-in browsers, in memory: a restart signs everybody out. A session ends after `idleTimeout` without a
/// request, after `lifetime` in any case, or when it signs out; past `maximumCount` the least recently seen goes.
actor DashboardSessions {
    static let cookieName = "warren_session"
    let idleTimeout: Duration
    let lifetime: Duration
    let maximumCount: Int
    private var sessions: [String: DashboardSession] = [:]
    private let clock = ContinuousClock()

    init(idleTimeout: Duration = .seconds(8 * 3_600), lifetime: Duration = .seconds(24 * 3_600), maximumCount: Int = 10_000) {
        self.idleTimeout = idleTimeout
        self.lifetime = lifetime
        self.maximumCount = maximumCount
    }

    func open(for identity: DashboardIdentity) -> DashboardSession {
        let now = clock.now
        if sessions.count >= maximumCount, let oldest = sessions.values.min(by: { $0.lastSeenAt < $1.lastSeenAt }) {
            sessions[oldest.id] = nil
        }
        let session = DashboardSession(
            id: ConstantTime.randomToken(), identity: identity, csrfToken: ConstantTime.randomToken(), createdAt: now, lastSeenAt: now)
        sessions[session.id] = session
        return session
    }

    /// The live session with this id, marked as seen now; `nil` (and forgotten) once it has expired.
    func session(id: String) -> DashboardSession? {
        guard var session = sessions[id] else { return nil }
        let now = clock.now
        guard now - session.lastSeenAt < idleTimeout, now - session.createdAt < lifetime else {
            sessions[id] = nil
            return nil
        }
        session.lastSeenAt = now
        sessions[id] = session
        return session
    }

    func close(id: String) {
        sessions[id] = nil
    }
}

/// Slows down guessing: after `limit` failed sign-ins for one user name (the empty name, for tokens, counts as one
/// name) within `window`, that name's sign-ins are refused without being checked until the window has passed since
/// the first of them. A success clears the name's count.
actor SignInThrottle {
    let limit: Int
    let window: Duration
    private var failures: [String: (count: Int, since: ContinuousClock.Instant)] = [:]
    private let clock = ContinuousClock()

    init(limit: Int = 5, window: Duration = .seconds(15 * 60)) {
        self.limit = limit
        self.window = window
    }

    /// How long `name` must wait before its next sign-in is checked; `nil` when it may sign in now.
    func wait(for name: String) -> Duration? {
        guard let entry = failures[name] else { return nil }
        let elapsed = clock.now - entry.since
        if elapsed >= window {
            failures[name] = nil
            return nil
        }
        return entry.count >= limit ? window - elapsed : nil
    }

    func failed(_ name: String) {
        if failures.count > 100_000 { failures.removeAll() }  // a flood of made-up names must not grow memory unbounded
        let now = clock.now
        let entry = failures[name].flatMap { now - $0.since < window ? $0 : nil } ?? (count: 0, since: now)
        failures[name] = (entry.count + 1, entry.since)
    }

    func succeeded(_ name: String) {
        failures[name] = nil
    }
}

/// Lets a request in with `Authorization: Bearer <token>` for a known token, or with a live session cookie; sets
/// ``DashboardRequestContext/identity``. Otherwise an API request (under `/api/`) gets 401 with
/// `WWW-Authenticate: Bearer`, and a page request is sent to the sign-in form (303), which brings the browser back.
/// Tokens are compared in constant time and never logged.
struct DashboardAccessMiddleware: RouterMiddleware {
    typealias Context = DashboardRequestContext
    let access: DashboardAccess
    let sessions: DashboardSessions

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        if let header = request.headers[.authorization] {
            guard header.hasPrefix("Bearer "), let identity = access.identity(forToken: String(header.dropFirst("Bearer ".count))) else {
                return try refuse(request)
            }
            context.identity = identity
            return try await next(request, context)
        }
        if let id = request.cookies[DashboardSessions.cookieName]?.value, let session = await sessions.session(id: id) {
            context.identity = session.identity
            context.session = session
            return try await next(request, context)
        }
        return try refuse(request)
    }

    private func refuse(_ request: Request) throws -> Response {
        if request.uri.path.hasPrefix("/api/") || request.method != .get {
            return try JSONResponse.error(
                .unauthorized, "unauthorized", "send Authorization: Bearer <token>, or sign in at /sign-in",
                headers: [.wwwAuthenticate: "Bearer"])
        }
        return Response(status: .seeOther, headers: [.location: Link.to("/sign-in", [("next", request.uri.description)])])
    }
}
