// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Warren",
    platforms: [.macOS(.v15)],
    products: [
        // The consumer framework: typed handlers, retries through delay queues, dead letters, publishing.
        .library(name: "Warren", targets: ["Warren"]),
        // Test support for applications: an in-memory worker with a manual clock.
        .library(name: "WarrenTesting", targets: ["WarrenTesting"]),
        // The AMQP 0-9-1 client over librabbitmq, usable without the framework.
        .library(name: "WarrenAMQP", targets: ["WarrenAMQP"]),
        // A throwaway RabbitMQ node for integration tests and local development.
        .library(name: "WarrenLocalBroker", targets: ["WarrenLocalBroker"]),
        // Health probes and a Prometheus scrape endpoint on Hummingbird: opt-in, so a worker without HTTP never
        // builds Hummingbird.
        .library(name: "WarrenHTTP", targets: ["WarrenHTTP"]),
        // The job ledger: records every worker's events in a store (SQLite embedded, or PostgreSQL), searchable, pruned.
        .library(name: "WarrenLedger", targets: ["WarrenLedger"]),
        // The ledger's HTTP API (jobs by id and by search, bearer tokens) as Hummingbird routes.
        .library(name: "WarrenDashboard", targets: ["WarrenDashboard"]),
        // The tools a user runs: the CLI (target `warren-cli`, executable `warren`), the dashboard, a throwaway broker.
        .executable(name: "warren", targets: ["warren-cli"]),
        .executable(name: "warren-dashboard", targets: ["warren-dashboard"]),
        .executable(name: "warren-local-broker", targets: ["warren-local-broker"]),
        // The examples (orders-worker, report-api, warren-demo) and Warren's own tools (warren-bench, warren-chaos,
        // warren-json-fuzz) are executable targets without a product: a dependent does not see them, while this
        // package still builds each by name (`swift build --product orders-worker`).
        .plugin(name: "LocalBrokerPlugin", targets: ["LocalBrokerPlugin"]),
    ],
    // The optional parts, each behind a trait: on by default (nothing changes for a package that names none), and a
    // dependent that wants less names what it wants — `traits: []` for the core alone (Warren, WarrenAMQP,
    // WarrenTesting, WarrenLocalBroker), `traits: ["Ledger"]` for the SQLite ledger without PostgreSQL. Packages used
    // only behind traits that are off are not fetched (README, "Add Warren to your package").
    traits: [
        .trait(name: "HTTP", description: "WarrenHTTP: health probes and a Prometheus endpoint on Hummingbird"),
        .trait(name: "Ledger", description: "WarrenLedger with its embedded SQLite store (sqlite-nio)"),
        .trait(
            name: "PostgreSQL", description: "the ledger's PostgreSQL store (postgres-nio, swift-nio-ssl)",
            enabledTraits: ["Ledger"]),
        .trait(
            name: "Dashboard", description: "WarrenDashboard and warren-dashboard (Hummingbird, swift-crypto)",
            enabledTraits: ["Ledger", "HTTP"]),
        // Off by default: swift-otel takes minutes to build. `swift build --traits OTLP --product orders-worker` (or
        // `make otlp-check`) builds the example host with `--otlp-endpoint`.
        .trait(
            name: "OTLP",
            description: "orders-worker exports its traces with swift-otel over OTLP/HTTP (--otlp-endpoint)"),
        .default(enabledTraits: ["HTTP", "Ledger", "PostgreSQL", "Dashboard"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.7.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.8.0"),
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.1.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        .package(url: "https://github.com/swift-otel/swift-w3c-trace-context.git", from: "1.0.0"),
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
        .package(url: "https://github.com/vapor/sqlite-nio.git", from: "1.13.2"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        // Already built for postgres-nio: the dashboard hashes passwords with its PBKDF2.
        .package(url: "https://github.com/apple/swift-crypto.git", "4.0.0"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.81.0"),
        // Already built for postgres-nio: the ledger's PostgreSQL TLS (sslmode, sslrootcert).
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.27.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.0.0"),
    ],
    targets: [
        // MARK: - The AMQP client: librabbitmq behind one dedicated thread per connection

        .systemLibrary(
            name: "CRabbitMQ",
            pkgConfig: "librabbitmq",
            providers: [.apt(["librabbitmq-dev"]), .brew(["rabbitmq-c"])]
        ),
        .target(name: "CRabbitMQShims", dependencies: ["CRabbitMQ"]),
        .target(
            name: "WarrenAMQP",
            dependencies: [
                "CRabbitMQ",
                "CRabbitMQShims",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),

        // MARK: - The framework, its JSON fast path and its test support for applications

        // The JSON fast path behind JSONMessageCodec: one entry point (FastJSON), checked against Foundation by
        // warren-json-fuzz.
        .target(name: "WarrenJSON"),
        .target(
            name: "Warren",
            dependencies: [
                "WarrenAMQP",
                "WarrenJSON",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "W3CTraceContext", package: "swift-w3c-trace-context"),
            ]
        ),
        .target(
            name: "WarrenTesting",
            dependencies: ["Warren", "WarrenAMQP", .product(name: "Logging", package: "swift-log")]
        ),

        // MARK: - Optional parts: HTTP health and metrics, the ledger, the dashboard

        .target(
            name: "WarrenHTTP",
            dependencies: [
                "Warren",
                .product(name: "Hummingbird", package: "hummingbird", condition: .when(traits: ["HTTP"])),
                .product(name: "Prometheus", package: "swift-prometheus", condition: .when(traits: ["HTTP"])),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio", condition: .when(traits: ["HTTP"])),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "WarrenLedger",
            dependencies: [
                "Warren", "WarrenAMQP",
                .product(name: "SQLiteNIO", package: "sqlite-nio", condition: .when(traits: ["Ledger"])),
                .product(name: "PostgresNIO", package: "postgres-nio", condition: .when(traits: ["PostgreSQL"])),
                .product(name: "NIOSSL", package: "swift-nio-ssl", condition: .when(traits: ["PostgreSQL"])),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "WarrenDashboard",
            dependencies: [
                "Warren", "WarrenAMQP", "WarrenLedger",
                .product(name: "Hummingbird", package: "hummingbird", condition: .when(traits: ["Dashboard"])),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto", condition: .when(traits: ["Dashboard"])),
                .product(name: "_CryptoExtras", package: "swift-crypto", condition: .when(traits: ["Dashboard"])),
                .product(name: "NIOPosix", package: "swift-nio", condition: .when(traits: ["Dashboard"])),
                .product(name: "HTTPTypes", package: "swift-http-types", condition: .when(traits: ["Dashboard"])),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // MARK: - The tools a user runs: the CLI, the dashboard, a throwaway broker (and its plugin)

        .executableTarget(
            name: "warren-cli",
            dependencies: [
                "Warren",
                "WarrenAMQP",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "warren-dashboard",
            dependencies: [
                "Warren", "WarrenAMQP", "WarrenLedger", "WarrenDashboard", "WarrenHTTP",
                .product(name: "Hummingbird", package: "hummingbird", condition: .when(traits: ["Dashboard"])),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(name: "WarrenLocalBroker"),
        .executableTarget(
            name: "warren-local-broker",
            dependencies: [
                "WarrenLocalBroker",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .plugin(
            name: "LocalBrokerPlugin",
            capability: .command(
                intent: .custom(
                    verb: "local-broker",
                    description: "Start, stop or inspect a throwaway RabbitMQ node for local development"),
                // No sandbox on Linux; on macOS run it with --disable-sandbox (the broker listens on loopback).
                permissions: []
            ),
            dependencies: ["warren-local-broker"]
        ),

        // MARK: - Examples (no products): the host of the quick start, the request path, the client alone

        .executableTarget(
            name: "orders-worker",
            dependencies: [
                "Warren",
                "WarrenHTTP",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "OTel", package: "swift-otel", condition: .when(traits: ["OTLP"])),
                "WarrenAMQP",
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The example of the request path: POST → 202, a worker makes the report, status from the ledger.
        .executableTarget(
            name: "report-api",
            dependencies: [
                "Warren", "WarrenAMQP", "WarrenLedger", "WarrenHTTP",
                .product(name: "Hummingbird", package: "hummingbird", condition: .when(traits: ["HTTP"])),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "warren-demo",
            dependencies: ["WarrenAMQP", "WarrenLocalBroker"]
        ),

        // MARK: - Warren's own tools (no products): benchmarks, chaos, fuzzing

        // warren-bench only: counts the process's heap allocations (glibc).
        .target(name: "CMallocCounter"),
        .executableTarget(
            name: "warren-bench",
            dependencies: [
                "Warren",
                "WarrenAMQP",
                "WarrenLocalBroker",
                "CRabbitMQ",
                "CRabbitMQShims",
                "CMallocCounter",
                "WarrenLedger",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
            ]
        ),
        .executableTarget(
            name: "warren-chaos",
            dependencies: [
                "Warren",
                "WarrenAMQP",
                "WarrenLocalBroker",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The JSON fast path against Foundation: a fixed-seed pass (make test), or libFuzzer's target (make fuzz).
        .executableTarget(name: "warren-json-fuzz", dependencies: ["WarrenJSON"]),

        // MARK: - The code blocks of the documents compiled, and what the tests share

        // Compiles the Swift blocks of README.md and docs/ (the DocSnippets target): the documents' code builds.
        .executableTarget(name: "doc-snippets"),
        .plugin(name: "DocSnippetsPlugin", capability: .buildTool(), dependencies: ["doc-snippets"]),
        .target(
            name: "DocSnippets",
            dependencies: [
                "Warren", "WarrenAMQP", "WarrenTesting", "WarrenLocalBroker", "WarrenHTTP", "WarrenLedger",
                .product(name: "Hummingbird", package: "hummingbird", condition: .when(traits: ["HTTP"])),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Configuration", package: "swift-configuration"),
            ],
            path: "Tests/DocSnippets",
            plugins: ["DocSnippetsPlugin"]
        ),
        // What the test targets share: the test broker and PostgreSQL, the services a suite declares it needs, a quiet
        // logger, `eventually`, the failure type; and the fixtures of more than one target (the welcome email and its
        // recorder, the HTTP client, the process's metrics, the ledger's stores, the dashboard served in-process).
        .target(
            name: "WarrenTestSupport",
            dependencies: [
                "Warren", "WarrenAMQP", "WarrenLocalBroker", "WarrenHTTP", "WarrenLedger", "WarrenDashboard",
                .product(name: "Hummingbird", package: "hummingbird", condition: .when(traits: ["HTTP"])),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            path: "Tests/WarrenTestSupport"
        ),

        // MARK: - Unit tests, one target per library: no broker, no PostgreSQL, no browser, no process started

        .testTarget(
            name: "WarrenAMQPTests",
            dependencies: [
                "WarrenAMQP", "WarrenTestSupport", "CRabbitMQ",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        // Warren and WarrenTesting: the in-memory transport and harness, retries, codecs, events, settings.
        .testTarget(
            name: "WarrenTests",
            dependencies: [
                "Warren", "WarrenTesting", "WarrenAMQP", "WarrenTestSupport",
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "WarrenJSONTests",
            dependencies: [
                "Warren", "WarrenJSON", .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        .testTarget(
            name: "WarrenHTTPTests",
            dependencies: [
                "Warren", "WarrenHTTP", "WarrenTestSupport",
                .product(name: "Prometheus", package: "swift-prometheus", condition: .when(traits: ["HTTP"])),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The ledger on its embedded SQLite, in files of the test's own.
        .testTarget(
            name: "WarrenLedgerTests",
            dependencies: [
                "Warren", "WarrenAMQP", "WarrenLedger", "WarrenTestSupport",
                .product(name: "SQLiteNIO", package: "sqlite-nio", condition: .when(traits: ["Ledger"])),
            ]
        ),
        // The dashboard's routes served in the test process over SQLite.
        .testTarget(
            name: "WarrenDashboardTests",
            dependencies: ["Warren", "WarrenDashboard", "WarrenLedger", "WarrenTestSupport"]
        ),

        // MARK: - Integration tests: every suite that starts or needs a process

        // RabbitMQ (the shared node, nodes of their own, a cluster), PostgreSQL, headless Chromium, promtool, and the
        // package's executables run as a user runs them (orders-worker, warren, warren-dashboard, report-api,
        // warren-bench, warren-chaos, warren-json-fuzz).
        .testTarget(
            name: "WarrenIntegrationTests",
            dependencies: [
                "Warren", "WarrenAMQP", "WarrenLocalBroker", "WarrenHTTP", "WarrenLedger", "WarrenDashboard",
                "WarrenTesting", "WarrenTestSupport",
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
