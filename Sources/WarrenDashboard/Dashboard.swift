import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Warren
import WarrenLedger

/// The dashboard: server-rendered pages over a ledger store (no JavaScript, no front-end build) and the same data as
/// JSON under `/api/` (``LedgerAPI``), all behind ``DashboardAccess``.
///
/// Pages: `/jobs` (search by message id, type, queue, status and time), `/jobs/{message_id}` (a job and its attempts),
/// `/failures` (dead letters grouped by failure), `/failures/{group_id}` (a group's dead letters),
/// `/dead-letters/{message_id}` (headers and body, escaped; binary bodies as hex), `/queues` (each work queue's depth,
/// consumers, delay queues, redelivered and dead-letter queues; rates when the management API is reachable; JSON at
/// `/api/queues`), `/schedules` (recurring jobs: schedule, zone, last tick, next run, last runs, leader; run now, pause
/// and resume for operators; JSON at `/api/schedules`). Signing in: `/sign-in` (a form;
/// a user of the users file, or an empty name and a token as the password) gives a session cookie (`HttpOnly`,
/// `SameSite=Strict`); every form that changes something carries the session's CSRF token.
///
/// Text that comes from messages (types, errors, headers, bodies, even message ids) is escaped wherever it appears,
/// and every page is sent with a `Content-Security-Policy` that allows no script at all.
public struct Dashboard: Sendable {
    public let store: any LedgerStore
    public let access: DashboardAccess
    /// Whether the session cookie is marked `Secure` (set it when the dashboard is served over HTTPS, e.g. behind a
    /// proxy that terminates TLS).
    public var secureCookies: Bool
    /// Asks the broker about queues for the queues page; `nil`: the page says no broker is configured.
    public var inspector: (any QueueInspector)?
    /// Work queues the queues page shows besides those the ledger has jobs of.
    public var watchedQueues: [String]
    /// Replays and purges dead letters still in their queues for operators; `nil`: off (no broker).
    public var queueActions: (any DeadLetterQueueActions)?
    /// Replays and purges the dead letters the ledger holds (``DeadLetterIntake``), one or in bulk, as durable
    /// operations; `nil`: off (no broker, or the dead letters stay in their queues). Run it in the same
    /// `ServiceGroup`: the bulk operations the dashboard starts are handed to its `run()`.
    public var runner: DeadLetterOperationRunner?
    /// Reads the recurring jobs' directory and runs, pauses and resumes them for operators (`/schedules`); `nil`: the
    /// page says there is no broker.
    public var schedules: (any ScheduleOperations)?
    let sessions: DashboardSessions
    /// Failed sign-ins and bearer tokens, per client and per user name.
    let guesses: GuessThrottle
    let clients: ClientAddresses
    /// Refused replays and purges written to the audit log, per user (a viewer looping them must not fill it).
    let refusals: RefusalLimiter

    /// - Parameters:
    ///   - trustedProxies: the addresses of the proxies in front of the dashboard (TLS terminators) whose
    ///     `X-Forwarded-For` names the client that sign-in and token throttling count against; from anyone else the
    ///     header is ignored.
    /// - Throws: ``DashboardConfigurationError`` for a trusted proxy that is not an IP address.
    public init(
        store: any LedgerStore, access: DashboardAccess, inspector: (any QueueInspector)? = nil,
        queueActions: (any DeadLetterQueueActions)? = nil,
        runner: DeadLetterOperationRunner? = nil, watchedQueues: [String] = [], secureCookies: Bool = false,
        trustedProxies: [String] = []
    ) throws {
        try self.init(
            store: store, access: access, inspector: inspector, queueActions: queueActions, runner: runner,
            watchedQueues: watchedQueues,
            secureCookies: secureCookies, trustedProxies: trustedProxies, guessPolicy: GuessThrottle.Policy())
    }

    /// The former spelling of ``init(store:access:inspector:queueActions:runner:watchedQueues:secureCookies:trustedProxies:)``.
    @available(
        *, deprecated,
        renamed: "init(store:access:inspector:queueActions:runner:watchedQueues:secureCookies:trustedProxies:)"
    )
    public init(
        store: any LedgerStore, access: DashboardAccess, inspector: (any QueueInspector)? = nil,
        operations: (any DeadLetterQueueActions)?,
        runner: DeadLetterOperationRunner? = nil, watchedQueues: [String] = [], secureCookies: Bool = false,
        trustedProxies: [String] = []
    ) throws {
        try self.init(
            store: store, access: access, inspector: inspector, queueActions: operations, runner: runner,
            watchedQueues: watchedQueues,
            secureCookies: secureCookies, trustedProxies: trustedProxies)
    }

    /// The former name of ``queueActions``.
    @available(*, deprecated, renamed: "queueActions")
    public var operations: (any DeadLetterQueueActions)? {
        get { queueActions }
        set { queueActions = newValue }
    }

    init(
        store: any LedgerStore, access: DashboardAccess, inspector: (any QueueInspector)? = nil,
        queueActions: (any DeadLetterQueueActions)? = nil,
        runner: DeadLetterOperationRunner? = nil, watchedQueues: [String] = [], secureCookies: Bool = false,
        trustedProxies: [String] = [],
        guessPolicy: GuessThrottle.Policy
    ) throws {
        self.clients = try ClientAddresses(trustedProxies: trustedProxies)
        self.guesses = GuessThrottle(guessPolicy)
        self.refusals = RefusalLimiter()
        self.store = store
        self.runner = runner
        self.access = access
        self.inspector = inspector
        self.queueActions = queueActions
        self.watchedQueues = watchedQueues
        self.secureCookies = secureCookies
        self.sessions = DashboardSessions()
    }

    /// Adds the pages, the sign-in form and the API (under `api/`) to `router`: each resource (`Resources/`) adds its
    /// pages and its JSON routes.
    public func addRoutes(to router: Router<DashboardRequestContext>) {
        router.add(middleware: RefuseNULMiddleware())
        router.get("assets/dashboard.css") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/css; charset=utf-8", .cacheControl: "max-age=3600"],
                body: .init(byteBuffer: ByteBuffer(string: Self.stylesheet)))
        }
        let signedIn = router.group().add(
            middleware: DashboardAccessMiddleware(
                access: access, sessions: sessions, guesses: guesses, clients: clients))
        signedIn.get("/") { _, _ in Response(status: .seeOther, headers: [.location: "/jobs"]) }
        addSignInRoutes(open: router, signedIn: signedIn)
        let api = signedIn.group("api")
        addJobRoutes(pages: signedIn, api: api)
        addFailureRoutes(pages: signedIn, api: api)
        addDeadLetterRoutes(pages: signedIn, api: api)
        addQueueRoutes(pages: signedIn, api: api)
        addOperationRoutes(pages: signedIn, api: api)
        addAuditRoutes(pages: signedIn, api: api)
        addScheduleRoutes(pages: signedIn, api: api)
    }
}
