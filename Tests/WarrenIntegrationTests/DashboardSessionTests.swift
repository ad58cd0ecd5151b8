import Foundation
import Testing
import WarrenTestSupport

/// The dashboard's door, over plain HTTP: cookies, CSRF, redirects and roles, checked header by header.
@Suite("The dashboard's sign-in and sessions")
struct DashboardSessionTests {
    /// A fresh sign-in form's CSRF token and the cookie that goes with it.
    static func signInForm(port: Int) async -> (token: String?, cookie: String?) {
        let form = await httpGet(port: port, "/sign-in")
        return (
            csrfToken(in: form.body),
            form.headers["set-cookie"]?.firstMatch(of: /warren_sign_in=([^;]+)/).map { String($0.1) }
        )
    }

    /// The CSRF token of a page's form.
    static func csrfToken(in page: String) -> String? {
        page.firstMatch(of: /name="csrf_token" value="([^"]+)"/).map { String($0.1) }
    }

    /// Posts the sign-in form's `fields`, with the form's cookie when given.
    static func postSignIn(port: Int, _ fields: String, cookie: String?) async -> HTTPAnswer {
        await httpRequest(
            "POST", port: port, "/sign-in",
            headers: ["Content-Type": "application/x-www-form-urlencoded"].merging(
                cookie.map { ["Cookie": "warren_sign_in=\($0)"] } ?? [:]
            ) { $1 },
            body: fields)
    }

    @Test func signingInGivesAStrictHttpOnlyCookieAndFormsNeedTheirToken() async throws {
        let dashboard = try await SeededDashboard.start()
        let port = dashboard.port

        let anonymous = await httpGet(port: port, "/jobs?type=email.welcome")
        #expect(
            anonymous.status == 303 && anonymous.headers["location"] == "/sign-in?next=%2Fjobs%3Ftype%3Demail.welcome")
        let api = await httpGet(port: port, "/api/jobs")
        #expect(api.status == 401 && api.headers["www-authenticate"] == "Bearer")
        #expect(
            await httpGet(port: port, "/api/jobs", headers: ["Authorization": "Bearer \(SeededDashboard.token)"]).status
                == 200)

        // The form's token and its cookie.
        let form = await Self.signInForm(port: port)
        let formToken = try #require(form.token)
        let formCookie = try #require(form.cookie)
        func signIn(_ fields: String, cookie: String?) async -> HTTPAnswer {
            await Self.postSignIn(port: port, fields, cookie: cookie)
        }
        let password = SeededDashboard.operatorPassword.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        #expect(
            await signIn("user=ada&password=\(password)&csrf_token=\(formToken)", cookie: nil).status == 403,
            "no form cookie: posted from elsewhere")
        #expect(await signIn("user=ada&password=wrong&csrf_token=\(formToken)", cookie: formCookie).status == 401)
        let signedIn = await signIn(
            "user=ada&password=\(password)&csrf_token=\(formToken)&next=%2F%2Fevil.example", cookie: formCookie)
        #expect(signedIn.status == 303 && signedIn.headers["location"] == "/jobs", "never sent to another site")
        let cookie = try #require(signedIn.headers["set-cookie"])
        #expect(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/"), "\(cookie)")
        let session = try #require(cookie.firstMatch(of: /warren_session=([^;]+)/)?.1).description

        // The session opens pages and the API; a form without its CSRF token is refused.
        let jobs = await httpGet(port: port, "/jobs", headers: ["Cookie": "warren_session=\(session)"])
        #expect(jobs.status == 200 && jobs.headers["content-security-policy"]?.contains("default-src 'none'") == true)
        #expect(
            await httpGet(port: port, "/api/jobs/welcome-1", headers: ["Cookie": "warren_session=\(session)"]).status
                == 200)
        // Times as durations before now: the seeded welcomes are 9 to 10 minutes old.
        let lastDay = await httpGet(
            port: port, "/jobs?type=email.welcome&status=succeeded&since=24h",
            headers: ["Cookie": "warren_session=\(session)"])
        #expect(lastDay.status == 200 && lastDay.body.contains(">welcome-30</code>"))
        let lastMinute = await httpGet(
            port: port, "/jobs?type=email.welcome&since=1m", headers: ["Cookie": "warren_session=\(session)"])
        #expect(lastMinute.status == 200 && lastMinute.body.contains("No job matches."))
        let csrf = try #require(Self.csrfToken(in: jobs.body))
        let forged = await httpRequest(
            "POST", port: port, "/sign-out",
            headers: ["Cookie": "warren_session=\(session)", "Content-Type": "application/x-www-form-urlencoded"],
            body: "csrf_token=forged")
        #expect(forged.status == 403)
        let signedOut = await httpRequest(
            "POST", port: port, "/sign-out",
            headers: ["Cookie": "warren_session=\(session)", "Content-Type": "application/x-www-form-urlencoded"],
            body: "csrf_token=\(csrf)")
        #expect(signedOut.status == 303)
        #expect(
            await httpGet(port: port, "/jobs", headers: ["Cookie": "warren_session=\(session)"]).status == 303,
            "the session is gone")
        #expect(
            !dashboard.dashboard.log.contains(SeededDashboard.operatorPassword)
                && !dashboard.dashboard.log.contains(session))
        await dashboard.stop()
    }

    @Test func repeatedWrongPasswordsMakeTheClientWait() async throws {
        let dashboard = try await SeededDashboard.start()
        let port = dashboard.port
        func signIn(_ user: String, _ password: String) async -> HTTPAnswer {
            let form = await Self.signInForm(port: port)
            let password = password.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
            return await Self.postSignIn(
                port: port, "user=\(user)&password=\(password)&csrf_token=\(form.token ?? "")",
                cookie: form.cookie ?? "")
        }
        for _ in 1...5 { #expect(await signIn("grace", "guess").status == 401) }
        let lockedAt = ContinuousClock.now
        let locked = await signIn("grace", SeededDashboard.viewerPassword)
        #expect(
            locked.status == 429 && Int(locked.headers["retry-after"] ?? "") == 1,
            "even the right password waits, a second at first")
        // The wait is one second: on a loaded machine the next sign-in may start after it has passed (then it signs in,
        // as it should), so the check holds for a request that starts well within it.
        let askedAt = ContinuousClock.now
        let other = await signIn("ada", SeededDashboard.operatorPassword)
        if askedAt - lockedAt < .milliseconds(600) {
            #expect(other.status == 429, "the client waits, whatever the name")
        }
        try await Task.sleep(for: .milliseconds(1_100))
        #expect(await signIn("ada", SeededDashboard.operatorPassword).status == 303, "then the right password signs in")
        await dashboard.stop()
    }
}
