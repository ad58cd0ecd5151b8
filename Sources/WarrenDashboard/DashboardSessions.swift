import Foundation
import HTTPTypes
import Hummingbird

/// The request context of the dashboard's routes: who is asking, once ``DashboardAccessMiddleware`` has let the
/// request in.
public struct DashboardRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Who is asking; `nil` only on the open routes (`/health`, the sign-in form, the stylesheet).
    public var identity: DashboardIdentity?
    /// The browser session the request came with; `nil` for a bearer token.
    var session: DashboardSession?
    /// The address of the socket's peer (a proxy's, behind one); `nil` for a Unix socket.
    let peerAddress: String?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        peerAddress = source.channel.remoteAddress?.ipAddress
    }

    /// Every JSON answer: keys sorted, a newline at the end, never cached.
    public var responseEncoder: DashboardJSONEncoder { DashboardJSONEncoder() }
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

    init(
        idleTimeout: Duration = .seconds(8 * 3_600), lifetime: Duration = .seconds(24 * 3_600),
        maximumCount: Int = 10_000
    ) {
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
            id: ConstantTime.randomToken(), identity: identity, csrfToken: ConstantTime.randomToken(), createdAt: now,
            lastSeenAt: now)
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

/// Lets a request in with `Authorization: Bearer <token>` for a known token, or with a live session cookie; sets
/// ``DashboardRequestContext/identity``. Otherwise an API request (under `/api/`) gets 401 with
/// `WWW-Authenticate: Bearer`, and a page request is sent to the sign-in form (303), which brings the browser back.
/// Tokens are compared in constant time and never logged. A client that sent wrong tokens too often (``GuessThrottle``)
/// gets 429 with `Retry-After`, whatever it sends, until its wait is over.
struct DashboardAccessMiddleware: RouterMiddleware {
    typealias Context = DashboardRequestContext
    let access: DashboardAccess
    let sessions: DashboardSessions
    let guesses: GuessThrottle
    let clients: ClientAddresses

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        var context = context
        if let header = request.headers[.authorization] {
            let client = clients.client(of: request, context)
            let token = header.hasPrefix("Bearer ") ? String(header.dropFirst("Bearer ".count)) : ""
            switch await guesses.checkToken(token, client: client, access: access) {
            case .wait(let wait):
                let seconds = max(1, wait.components.seconds + 1)
                return try APIError(
                    "too_many_requests", "too many wrong tokens from this client: try again in \(seconds) s"
                )
                .response(.tooManyRequests, headers: [.retryAfter: "\(seconds)"], for: request, context: context)
            case .refused:
                context.logger.notice("dashboard token refused", metadata: ["client": "\(client)"])
                return try refuse(request, context)
            case .accepted(let identity):
                context.identity = identity
                return try await next(request, context)
            }
        }
        if let id = request.cookies[DashboardSessions.cookieName]?.value, let session = await sessions.session(id: id) {
            context.identity = session.identity
            context.session = session
            return try await next(request, context)
        }
        return try refuse(request, context)
    }

    private func refuse(_ request: Request, _ context: Context) throws -> Response {
        if request.uri.path.hasPrefix("/api/") || request.method != .get {
            return try APIError("unauthorized", "send Authorization: Bearer <token>, or sign in at /sign-in")
                .response(.unauthorized, headers: [.wwwAuthenticate: "Bearer"], for: request, context: context)
        }
        return Response(
            status: .seeOther, headers: [.location: Link.to("/sign-in", [("next", request.uri.description)])])
    }
}

extension ClientAddresses {
    /// The throttling key of `request`: its peer, or the client a trusted proxy forwarded it for.
    func client(of request: Request, _ context: DashboardRequestContext) -> String {
        client(peer: context.peerAddress, forwardedFor: request.headers[values: HTTPField.Name("X-Forwarded-For")!])
    }
}

/// 400 for a request whose path or query holds a NUL character, raw or percent-encoded: no id, name or search term
/// has one, and PostgreSQL cannot even be asked about one.
struct RefuseNULMiddleware: RouterMiddleware {
    typealias Context = DashboardRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let target = request.uri.description.utf8
        let encoded = target.indices.contains { index in
            target[index] == UInt8(ascii: "%") && target[index...].dropFirst().prefix(2).elementsEqual("00".utf8)
        }
        if encoded || target.contains(0) {
            if request.uri.path.hasPrefix("/api/") {
                return try APIError("bad_request", "the address must not contain NUL characters (%00)")
                    .response(.badRequest, for: request, context: context)
            }
            return Dashboard.problem(.badRequest, "The address must not contain NUL characters (%00).", link: "/jobs")
        }
        return try await next(request, context)
    }
}
