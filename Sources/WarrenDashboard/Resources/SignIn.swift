import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Warren
import WarrenLedger

// The sign-in form, signing in and out, and what every form that changes something checks (its CSRF token).
extension Dashboard {
    func addSignInRoutes(open router: Router<DashboardRequestContext>, signedIn: RouterGroup<DashboardRequestContext>) {
        router.get("sign-in") { request, _ in
            signInForm(next: request.uri.queryParameters["next"].map(String.init), failed: false)
        }
        router.post("sign-in") { request, context in try await signIn(request, context) }
        signedIn.post("sign-out") { request, context in try await signOut(request, context) }
    }

    static let signInCookie = "warren_sign_in"

    /// The form, with a fresh token in a cookie and in the form: a sign-in posted from another site lacks the cookie.
    func signInForm(next: String?, failed: Bool) -> Response {
        let token = ConstantTime.randomToken()
        let content: HTML = """
            <main class="sign-in">
            <h1>Warren</h1>
            \(failed ? HTML("<p class=\"error\" role=\"alert\">That name and password (or token) did not match.</p>") : .empty)
            <form method="post" action="/sign-in">
            <input type="hidden" name="csrf_token" value="\(token)">
            <input type="hidden" name="next" value="\(Self.localPath(next) ?? "/jobs")">
            <label for="user">User <span class="hint">(empty to sign in with a token)</span></label>
            <input id="user" name="user" autocomplete="username" autofocus>
            <label for="password">Password or token</label>
            <input id="password" name="password" type="password" autocomplete="current-password" required>
            <button type="submit">Sign in</button>
            </form>
            </main>
            """
        let cookie = Cookie(
            name: Self.signInCookie, value: token, maxAge: 3_600, path: "/sign-in", secure: secureCookies,
            httpOnly: true, sameSite: .strict)
        return Self.document(title: "Sign in", content: content)
            .response(status: failed ? .unauthorized : .ok, headers: [.setCookie: cookie.description])
    }

    struct SignInForm: Decodable {
        var user: String?
        var password: String?
        var next: String?
        var csrfToken: String?
        enum CodingKeys: String, CodingKey {
            case user, password, next
            case csrfToken = "csrf_token"
        }
    }

    func signIn(_ request: Request, _ context: DashboardRequestContext) async throws -> Response {
        let form = try await Self.form(SignInForm.self, request)
        guard let expected = request.cookies[Self.signInCookie]?.value, let sent = form.csrfToken,
            ConstantTime.equal(Array(sent.utf8), Array(expected.utf8))
        else {
            return Self.problem(.forbidden, "This sign-in form has expired or came from elsewhere.", link: "/sign-in")
        }
        let name = form.user ?? ""
        let client = clients.client(of: request, context)
        // A name longer than any user's is refused unchecked; it is not remembered either.
        let throttledName = name.isEmpty || name.utf8.count > DashboardAccess.maximumNameLength ? nil : name
        // What the log says of the name: a user's name, or only its length (an unknown name may be a password or a
        // token typed in the wrong field, and it must not forge log lines).
        let loggedName: Logger.Metadata =
            access.isUser(name) ? ["user": "\(name)"] : ["user_length": "\(name.utf8.count)"]
        if let wait = await guesses.reserve(client: client, name: throttledName) {
            context.logger.notice(
                "dashboard sign-in throttled", metadata: loggedName.merging(["client": "\(client)"]) { $1 })
            return Self.tooManyGuesses(wait)
        }
        let identity: DashboardIdentity
        switch await access.signIn(name: name, password: form.password ?? "") {
        case .busy:
            await guesses.release(client: client, name: throttledName)
            context.logger.warning(
                "dashboard sign-in refused unchecked: too many password checks under way",
                metadata: ["client": "\(client)"])
            return Self.problem(
                .serviceUnavailable, "Too many sign-ins are being checked right now: try again in a few seconds.",
                link: "/sign-in",
                headers: [.retryAfter: "2"])
        case .refused:
            context.logger.notice(
                "dashboard sign-in refused", metadata: loggedName.merging(["client": "\(client)"]) { $1 })
            return signInForm(next: form.next, failed: true)
        case .signedIn(let signedIn):
            await guesses.succeeded(client: client, name: throttledName)
            identity = signedIn
        }
        let session = await sessions.open(for: identity)
        context.logger.info(
            "dashboard sign-in", metadata: ["user": "\(identity.name)", "role": "\(identity.role.rawValue)"])
        var headers: HTTPFields = [.location: Self.localPath(form.next) ?? "/jobs"]
        headers.append(
            .init(
                name: .setCookie,
                value: sessionCookie(session.id, maxAge: Int(sessions.lifetime.components.seconds)).description))
        headers.append(
            .init(
                name: .setCookie,
                value: Cookie(name: Self.signInCookie, value: "", maxAge: 0, path: "/sign-in").description))
        return Response(status: .seeOther, headers: headers)
    }

    struct CSRFForm: Decodable {
        var csrfToken: String?
        enum CodingKeys: String, CodingKey { case csrfToken = "csrf_token" }
    }

    func signOut(_ request: Request, _ context: DashboardRequestContext) async throws -> Response {
        if let refusal = try await Self.refuseWithoutCSRF(request, context) { return refusal }
        if let session = context.session { await sessions.close(id: session.id) }
        return Response(
            status: .seeOther, headers: [.location: "/sign-in", .setCookie: sessionCookie("", maxAge: 0).description])
    }

    func sessionCookie(_ value: String, maxAge: Int) -> Cookie {
        Cookie(
            name: DashboardSessions.cookieName, value: value, maxAge: maxAge, path: "/", secure: secureCookies,
            httpOnly: true, sameSite: .strict)
    }

    /// A 403 page when a request that came with a session cookie lacks its CSRF token; `nil` when it may go on
    /// (right token, or a bearer token, which a browser never adds by itself).
    static func refuseWithoutCSRF(_ request: Request, _ context: DashboardRequestContext) async throws -> Response? {
        guard context.session != nil else { return nil }
        return refuseWithoutCSRF(sent: try await form(CSRFForm.self, request).csrfToken, request, context)
    }

    /// As ``refuseWithoutCSRF(_:_:)`` for a form already read (a body is read once): `sent` is its `csrf_token`.
    static func refuseWithoutCSRF(sent: String?, _ request: Request, _ context: DashboardRequestContext) -> Response? {
        guard let session = context.session else { return nil }
        let sent = sent ?? request.headers[HTTPField.Name("X-CSRF-Token")!]
        guard let sent, ConstantTime.equal(Array(sent.utf8), Array(session.csrfToken.utf8)) else {
            return problem(
                .forbidden, "This form has expired or came from elsewhere: reload the page and try again.",
                link: "/jobs")
        }
        return nil
    }

    /// An URL-encoded form body (at most 64 KiB).
    /// - Throws: `HTTPError` 400 with a sentence when the body is not such a form (a number that is not one, a field
    ///   given twice); 413 when it is larger.
    static func form<Form: Decodable>(_ type: Form.Type, _ request: Request) async throws -> Form {
        var request = request
        let body = try await request.collectBody(upTo: 64 * 1024)
        do {
            return try URLEncodedFormDecoder().decode(Form.self, from: String(buffer: body))
        } catch {
            throw HTTPError(.badRequest, message: "The form's fields could not be read: send it again from the page.")
        }
    }

    /// `path` when it is a path on this server, so a sign-in never sends anyone elsewhere: it starts with one `/`, and
    /// holds printable ASCII only, no backslash (browsers drop tabs and newlines, and read `\` as `/`, so `/<TAB>/evil`
    /// and `/\evil` would lead to another host).
    static func localPath(_ path: String?) -> String? {
        guard let path, path.utf8.count <= 2_048, path.hasPrefix("/"), !path.hasPrefix("//"),
            path.utf8.allSatisfy({ (0x21...0x7E).contains($0) && $0 != UInt8(ascii: "\\") })
        else { return nil }
        return path
    }

    /// 429 with `Retry-After` for a client that failed too often.
    static func tooManyGuesses(_ wait: Duration) -> Response {
        let seconds = max(1, wait.components.seconds + (wait.components.attoseconds > 0 ? 1 : 0))
        let when = seconds < 90 ? "\(seconds) seconds" : "\((seconds + 59) / 60) minutes"
        return problem(
            .tooManyRequests, "Too many failed sign-ins from here: try again in \(when).", link: "/sign-in",
            headers: [.retryAfter: "\(seconds)"])
    }
}
