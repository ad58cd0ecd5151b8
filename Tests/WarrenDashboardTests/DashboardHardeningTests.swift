import Foundation
import Testing
import WarrenLedger
import WarrenTestSupport

@testable import WarrenDashboard

@Suite("The dashboard against hostile clients", .serialized)
struct DashboardHardeningTests {
    @Test func everyJSONAnswerIsSortedEndsInANewlineAndIsNeverCached() async throws {
        try await DashboardScene.with { scene in
            for (target, status) in [
                ("/api/jobs", 200), ("/api/jobs?limit=0", 400), ("/api/jobs/unknown", 404), ("/api/audit", 200),
            ] {
                let answer = await scene.request("GET", target, headers: scene.operatorAuth)
                #expect(answer.status == status, "\(target): \(answer.status) \(answer.body)")
                #expect(answer.headers["content-type"] == "application/json", "\(target)")
                #expect(answer.headers["cache-control"] == "no-store", "\(target)")
                #expect(answer.body.hasSuffix("}\n"), "\(target): \(answer.body)")
            }
            let refused = await scene.request("GET", "/api/jobs?limit=0", headers: scene.operatorAuth)
            #expect(refused.body.hasPrefix(#"{"error":"bad_request","message":"#), "keys sorted: \(refused.body)")
            let unauthorized = await scene.request("GET", "/api/jobs")
            #expect(
                unauthorized.status == 401 && unauthorized.headers["www-authenticate"] == "Bearer"
                    && unauthorized.headers["cache-control"] == "no-store")
        }
    }

    @Test func overflowingDurationsAreRefusedWithASentence() async throws {
        #expect(ShortDuration.milliseconds("99999999999999d") == nil)
        #expect(ShortDuration.milliseconds("9223372036854775807s") == nil)
        #expect(ShortDuration.milliseconds("36500d") == Int64(3_153_600_000_000))
        #expect(ShortDuration.milliseconds("36501d") == nil, "longer than 100 years")
        try await DashboardScene.with { scene in
            for parameter in ["since", "until"] {
                let answer = await scene.request(
                    "GET", "/api/jobs?\(parameter)=99999999999999d", headers: scene.operatorAuth)
                #expect(
                    answer.status == 400 && answer.body.contains("at most 100 years"), "\(answer.status) \(answer.body)"
                )
            }
            let page = await scene.request("GET", "/jobs?since=99999999999999d", headers: scene.viewerAuth)
            #expect(page.status == 400 && page.body.contains("at most 100 years"))
            let limit = await scene.request("GET", "/api/audit?limit=99999999999999999999", headers: scene.viewerAuth)
            #expect(limit.status == 400 && limit.body.contains("limit must be a number from 1 to 500"), "\(limit.body)")
        }
    }

    @Test func aBinaryBodyIsDecodedOnlyAsFarAsItIsShown() {
        let bytes = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let letter = DeadLetterRecord(
            messageID: "b", atMs: 0, queue: "q", type: nil, reason: nil, error: nil, groupID: nil,
            body: Data(bytes).base64EncodedString(), bodyEncoding: "base64")
        let page = Dashboard.body(of: letter).markup
        #expect(
            page.contains("Binary, 300000 bytes") && page.contains("The first 262144 of 300000 bytes"),
            "\(page.suffix(300))")
        let small = DeadLetterRecord(
            messageID: "s", atMs: 0, queue: "q", type: nil, reason: nil, error: nil, groupID: nil,
            body: Data([1, 2, 3, 4, 5]).base64EncodedString(), bodyEncoding: "base64")
        #expect(
            Dashboard.body(of: small).markup.contains("Binary, 5 bytes")
                && !Dashboard.body(of: small).markup.contains("The first"))
    }

    @Test func aNextAddressLeadingElsewhereIsReplacedByTheJobsPage() async throws {
        for bad in [
            "//evil.example", "/\\evil.example", "/\t/evil.example", "/\n/evil.example", "/ /evil",
            "https://evil.example", "evil", "", "/\u{0}x",
        ] {
            #expect(Dashboard.localPath(bad) == nil, "\(bad.debugDescription)")
        }
        for good in ["/jobs", "/jobs/m-1?x=1&y=%20", "/failures/abc"] {
            #expect(Dashboard.localPath(good) == good)
        }
        try await DashboardScene.with { scene in
            let signedIn = await scene.signIn(
                "ada", DashboardScene.adaPassword, next: "/\t/evil.example", from: "198.51.100.9")
            #expect(signedIn.status == 303 && signedIn.headers["location"] == "/jobs", "\(signedIn.headers)")
        }
    }

    @Test func aFloodOfBadSignInsCostsAtMostTheThrottlesPasswordChecks() async throws {
        // Checks never refused for being busy here, and a first delay longer than the test: only counting each attempt
        // before it is checked keeps the checks to five.
        let policy = GuessThrottle.Policy(firstDelay: .seconds(120))
        try await DashboardScene.with(checks: PasswordChecks(threads: 1, maximumInFlight: 1_000), guesses: policy) {
            scene in
            let token = await scene.signInForm(from: "203.0.113.5")
            let statuses = await withTaskGroup(of: Int.self) { group in
                for _ in 0..<200 {
                    group.addTask { await scene.signIn("ada", "wrong", from: "203.0.113.5", token: token).status }
                }
                return await group.reduce(into: [Int: Int]()) { $0[$1, default: 0] += 1 }
            }
            #expect(
                scene.checks.checksRun == policy.freeFailures, "\(scene.checks.checksRun) PBKDF2 runs for 200 sign-ins")
            #expect(statuses == [401: policy.freeFailures, 429: 200 - policy.freeFailures], "\(statuses)")
            // The right password from that client waits; from a client without failures it signs in at once.
            let waiting = await scene.signIn("ada", DashboardScene.adaPassword, from: "203.0.113.5")
            #expect(waiting.status == 429 && Int(waiting.headers["retry-after"] ?? "") ?? 0 > 60)
            let elsewhere = await scene.signIn("ada", DashboardScene.adaPassword, from: "198.51.100.20")
            #expect(elsewhere.status == 303 && elsewhere.cookies.contains { $0.hasPrefix("warren_session=") })
            let refused = scene.logs.all.filter { "\($0["message"] ?? "")" == "dashboard sign-in refused" }
            #expect(!refused.isEmpty && refused.allSatisfy { "\($0["user"] ?? "")" == "ada" })
        }
    }

    @Test func signingInAsOneselfBuysNoFreshGuessesAtAnother() async throws {
        try await DashboardScene.with(guesses: GuessThrottle.Policy(firstDelay: .seconds(120))) { scene in
            for _ in 1...4 { #expect(await scene.signIn("ada", "guess", from: "203.0.113.6").status == 401) }
            #expect(await scene.signIn("grace", "grace's password", from: "203.0.113.6").status == 303)
            #expect(await scene.signIn("ada", "guess", from: "203.0.113.6").status == 401, "the fifth failure")
            #expect(
                await scene.signIn("ada", "guess", from: "203.0.113.6").status == 429,
                "grace's sign-in did not wipe them")
        }
    }

    @Test func madeUpNamesFromManyClientsKeepThePasswordChecksBoundedAndSearchesGoOn() async throws {
        try await DashboardScene.with { scene in
            let searching = Task {
                var answered = 0
                var failed = 0
                while !Task.isCancelled {
                    let answer = await scene.request(
                        "GET", "/api/jobs?limit=5", headers: scene.viewerAuth, from: "198.51.100.77")
                    if answer.status == 200 { answered += 1 } else { failed += 1 }
                    try? await Task.sleep(for: .milliseconds(20))
                }
                return (answered, failed)
            }
            let unknown = scene.logs.all.count
            let random = await withTaskGroup(of: Int.self) { group in
                for index in 0..<60 {
                    group.addTask {
                        await scene.signIn(
                            "user-\(UUID().uuidString)", "guess", from: "10.1.\(index / 200).\(index % 200)"
                        ).status
                    }
                }
                return await group.reduce(into: [Int: Int]()) { $0[$1, default: 0] += 1 }
            }
            searching.cancel()
            let (answered, failed) = await searching.value
            #expect(
                Set(random.keys).isSubset(of: [401, 503]) && random[503, default: 0] > 0,
                "past four checks at once, 503: \(random)")
            #expect(scene.checks.checksRun <= 60 - random[503, default: 0])
            #expect(answered >= 1 && failed == 0, "searches answered meanwhile: \(answered), failed \(failed)")
            let refused = scene.logs.all.dropFirst(unknown).filter {
                "\($0["message"] ?? "")" == "dashboard sign-in refused"
            }
            #expect(
                !refused.isEmpty && refused.allSatisfy { $0["user"] == nil && $0["user_length"] != nil },
                "an unknown name is logged by its length only")
        }
    }

    @Test func aBurstOfWrongTokensIsCountedAsItComes() async throws {
        try await DashboardScene.with { scene in
            let statuses = await withTaskGroup(of: Int.self) { group in
                for attempt in 0..<50 {
                    group.addTask {
                        await scene.request(
                            "GET", "/api/jobs", headers: [("Authorization", "Bearer guess-\(attempt)")],
                            from: "203.0.113.30"
                        ).status
                    }
                }
                return await group.reduce(into: [Int: Int]()) { $0[$1, default: 0] += 1 }
            }
            #expect(
                statuses == [401: GuessThrottle.Policy().freeFailures, 429: 50 - GuessThrottle.Policy().freeFailures],
                "\(statuses)")
            // Right tokens at once from one client are not throttled.
            let right = await withTaskGroup(of: Int.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        await scene.request("GET", "/api/jobs", headers: scene.operatorAuth, from: "203.0.113.31")
                            .status
                    }
                }
                return await group.reduce(into: Set<Int>()) { $0.insert($1) }
            }
            #expect(right == [200])
        }
    }

    @Test func wrongBearerTokensAreThrottledPerClient() async throws {
        try await DashboardScene.with { scene in
            for attempt in 1...GuessThrottle.Policy().freeFailures {
                let answer = await scene.request(
                    "GET", "/api/jobs", headers: [("Authorization", "Bearer guess-\(attempt)")], from: "203.0.113.9")
                #expect(answer.status == 401)
            }
            let throttled = await scene.request("GET", "/api/jobs", headers: scene.operatorAuth, from: "203.0.113.9")
            #expect(
                throttled.status == 429 && throttled.headers["retry-after"] != nil,
                "even the right token waits: \(throttled.status)")
            #expect(
                await scene.request("GET", "/api/jobs", headers: scene.operatorAuth, from: "203.0.113.10").status == 200
            )
            // Without a trusted proxy in between, the header is not believed: the peer is the client.
            #expect(ClientAddresses.canonical("::ffff:1.2.3.4") == "1.2.3.4", "an IPv4 client of a dual-stack socket")
            #expect(ClientAddresses.key("1.2.3.4") == "1.2.3.4" && ClientAddresses.canonical("0:0::1") == "::1")
            #expect(
                try ClientAddresses(trustedProxies: ["10.0.0.1"]).client(
                    peer: "::ffff:10.0.0.1", forwardedFor: ["203.0.113.9"]) == "203.0.113.9")
            let direct = try ClientAddresses(trustedProxies: [])
            #expect(direct.client(peer: "127.0.0.1", forwardedFor: ["203.0.113.9"]) == "127.0.0.1")
            let proxied = try ClientAddresses(trustedProxies: ["10.0.0.1", "10.0.0.2"])
            #expect(
                proxied.client(peer: "10.0.0.1", forwardedFor: ["6.6.6.6, 203.0.113.9", "10.0.0.2"]) == "203.0.113.9",
                "rightmost untrusted")
            #expect(proxied.client(peer: "10.0.0.1", forwardedFor: ["not-an-address"]) == "10.0.0.1")
            #expect(proxied.client(peer: "2001:db8:1:2:3:4:5:6", forwardedFor: []) == "2001:db8:1:2::/64")
            #expect(throws: DashboardConfigurationError.self) { try ClientAddresses(trustedProxies: ["proxy.example"]) }
        }
    }

    @Test func theThrottleDelaysGrowAndFailuresElsewhereLockNobodyOut() async throws {
        let throttle = GuessThrottle(
            GuessThrottle.Policy(freeFailures: 2, firstDelay: .milliseconds(200), window: .seconds(60)))
        #expect(await throttle.reserve(client: "a", name: "ada") == nil)
        #expect(await throttle.reserve(client: "a", name: "ada") == nil)
        let first = try #require(await throttle.reserve(client: "a", name: "ada"))
        #expect(first > .milliseconds(100) && first <= .milliseconds(200))
        #expect(await throttle.reserve(client: "b", name: "ada") == nil, "a client without failures is checked at once")
        await throttle.succeeded(client: "b", name: "ada")
        try await Task.sleep(for: .milliseconds(250))
        #expect(await throttle.reserve(client: "a", name: "ada") == nil, "after the delay, one more")
        let second = try #require(await throttle.reserve(client: "a", name: "ada"))
        #expect(second > .milliseconds(300), "the delay doubled: \(second)")
        await throttle.release(client: "c", name: nil)
        #expect(await throttle.reserve(client: "c") == nil)
    }

    @Test func tokensShorterThan32CharactersAndTheDecoyCost() throws {
        #expect(throws: DashboardConfigurationError.self) {
            try DashboardAccess(operatorToken: "demo-0123456789abcdef")
        }
        #expect(throws: DashboardConfigurationError.self) {
            try DashboardAccess(operatorToken: String(repeating: "o", count: 40), viewerToken: "short")
        }
        #expect(throws: Never.self) { try DashboardAccess(operatorToken: String(repeating: "o", count: 32)) }
        #expect(throws: DashboardConfigurationError.self) {
            try DashboardUsers(
                parsing:
                    "\(String(repeating: "n", count: 129)):viewer:\(try PasswordHash.make("x", rounds: 100_000).encoded)"
            )
        }
    }

    @Test func theDecoyCostsAsMuchAsTheCostliestHashSoTimingHidesWhichNamesExist() async throws {
        let cheap = try PasswordHash.make("pw", rounds: 100_000)
        let costly = try PasswordHash.make("pw", rounds: 400_000)
        let access = try DashboardAccess(
            operatorToken: nil,
            users: DashboardUsers([
                .init(name: "ada", role: .operator, passwordHash: cheap.encoded),
                .init(name: "bob", role: .viewer, passwordHash: costly.encoded),
            ]))
        #expect(access.decoy.rounds == 400_000, "as many rounds as the costliest hash")
        #expect(await access.signIn(name: "nobody", password: "pw") == .refused)
        #expect(
            try DashboardAccess(operatorToken: String(repeating: "t", count: 32)).decoy.rounds
                == PasswordHash.defaultRounds)
    }

    @Test func refusalsOfAViewerAreAuditedAtMostTenAMinuteAndTargetsAreCut() async throws {
        try await DashboardScene.with { scene in
            var statuses: [Int] = []
            for _ in 0..<12 {
                let body = #"{"action": "replay", "filter": {"queue": "\#(String(repeating: "q", count: 200))"}}"#
                statuses.append(
                    await scene.request(
                        "POST", "/api/operations", headers: scene.viewerAuth + [("Content-Type", "application/json")],
                        body: body
                    ).status)
            }
            #expect(statuses == Array(repeating: 403, count: 10) + [429, 429], "\(statuses)")
            let audit = try await scene.store.auditLog(limit: 100, before: nil)
            #expect(audit.count == 10 && audit.allSatisfy { $0.outcome == "refused" })
            // An operator's request for a long message id is audited with its target cut.
            let long = String(repeating: "m", count: 1_000)
            let answer = await scene.request("POST", "/api/dead-letters/\(long)/replay", headers: scene.operatorAuth)
            #expect(answer.status == 503, "no broker: \(answer.body)")
            let entry = try #require(try await scene.store.auditLog(limit: 1, before: nil).first)
            #expect(entry.target.utf8.count <= Dashboard.auditTargetLimit && entry.target.hasSuffix("…"))
        }
    }

    /// Every state-changing route, with a session cookie: refused (403) without the session's CSRF token, with an
    /// empty one, and with another session's; let through with its own. A viewer's session and token, and the viewer's
    /// bearer token, are refused on the operations. Nothing a refusal asked for happens (no operation, no audit entry).
    @Test func everyStateChangingRouteRefusesASessionWithoutItsOwnCSRFToken() async throws {
        try await DashboardScene.with { scene in
            let (cookie, csrf) = try await scene.session(from: "198.51.100.7")
            let (_, otherCSRF) = try await scene.session(from: "198.51.100.8")
            #expect(!csrf.isEmpty && csrf != otherCSRF)
            // (path, JSON API?, body without the token); sign-out last, as it ends the session.
            let routes: [(String, Bool, String)] = [
                ("/dead-letters/m-1/replay", false, ""), ("/dead-letters/m-1/purge", false, ""),
                ("/operations", false, "action=replay&queue=emails"),
                ("/api/dead-letters/m-1/replay", true, ""), ("/api/dead-letters/m-1/purge", true, ""),
                ("/api/operations", true, #"{"action": "replay", "filter": {"queue": "emails"}}"#),
                ("/sign-out", false, ""),
            ]
            func post(_ path: String, json: Bool, body: String, token: String?, cookie: String, from client: String)
                async -> RawHTTP.Answer
            {
                var headers = [
                    ("Cookie", cookie),
                    ("Content-Type", json ? "application/json" : "application/x-www-form-urlencoded"),
                ]
                var body = body
                if let token {
                    if json {
                        headers.append(("X-CSRF-Token", token))
                    } else {
                        body = (body.isEmpty ? "" : body + "&") + "csrf_token=\(token)"
                    }
                }
                return await scene.request("POST", path, headers: headers, body: body, from: client)
            }
            for (path, json, body) in routes {
                for token in [nil, "", otherCSRF] {
                    let answer = await post(
                        path, json: json, body: body, token: token, cookie: cookie, from: "198.51.100.7")
                    #expect(
                        answer.status == 403,
                        "\(path) with token \(token.map { "'\($0)'" } ?? "none"): \(answer.status) \(answer.body.prefix(300))"
                    )
                }
            }
            #expect(try await scene.store.operations(limit: 10).isEmpty, "a refused request started nothing")
            #expect(try await scene.store.auditLog(limit: 10, before: nil).isEmpty, "nor was anything done to audit")
            #expect(
                await scene.request("GET", "/jobs", headers: [("Cookie", cookie)], from: "198.51.100.7").status == 200,
                "still signed in")

            // A viewer's own session and token, and the viewer's bearer token: refused on the operations (403).
            let (viewerCookie, viewerCSRF) = try await scene.session(
                from: "198.51.100.9", as: "grace", password: DashboardScene.gracePassword)
            for (path, json, body) in routes.dropLast() {
                let answer = await post(
                    path, json: json, body: body, token: viewerCSRF, cookie: viewerCookie, from: "198.51.100.9")
                #expect(
                    answer.status == 403, "a viewer's session on \(path): \(answer.status) \(answer.body.prefix(300))")
            }
            let bearer = await scene.request(
                "POST", "/api/operations", headers: scene.viewerAuth + [("Content-Type", "application/json")],
                body: #"{"action": "replay", "filter": {"queue": "emails"}}"#)
            #expect(bearer.status == 403)
            #expect(try await scene.store.operations(limit: 10).isEmpty)

            // With its own token the operator's session gets through (no broker here: 503 for the actions).
            for (path, json, body) in routes {
                let answer = await post(path, json: json, body: body, token: csrf, cookie: cookie, from: "198.51.100.7")
                #expect(
                    ![401, 403].contains(answer.status) && answer.status != 0,
                    "\(path) with its token: \(answer.status) \(answer.body.prefix(300))")
            }
            #expect(
                await scene.request("GET", "/jobs", headers: [("Cookie", cookie)], from: "198.51.100.7").status == 303,
                "signed out")
        }
    }
}

@Suite("A partition's holder from its consumer tag")
struct QueueHolderTagTests {
    @Test func onlyAWarrenHolderTagNamesAHostAndAPid() {
        #expect(
            QueueOverview.holder(fromConsumerTag: "warren-holder.web-1.example.com.4242.ab12cd34")
                == "web-1.example.com (pid 4242)")
        #expect(
            QueueOverview.holder(fromConsumerTag: "warren-holder.<b>x</b>.7.z") == "<b>x</b> (pid 7)", "shown escaped")
        for hostile in [
            "", "warren-holder.", "warren-holder..1.x", "warren-holder.h.notapid.x", "warren-holder.h.-3.x",
            "warren-holder.h.0.x", "warren-holder.h.99999999999999999999.x", "amq.ctag-1", "warren-abc",
            "warren-holder.h.12", "warren-holder." + String(repeating: "h", count: 300) + ".1.x",
        ] {
            #expect(QueueOverview.holder(fromConsumerTag: hostile) == nil, "\(hostile.prefix(40))")
        }
    }
}
