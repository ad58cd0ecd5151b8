import Foundation
import Logging
import ServiceLifecycle
import Testing
import Warren
import WarrenTestSupport

@testable import WarrenLedger

/// A store's work runs in its `run()`, in the task of whoever runs it (a service group or `withRunning`): no task of
/// its own outlives it.
@Suite("A ledger store runs in its owner's task", .tags(.postgres), .needs(.postgres))
struct LedgerStoreRunningTests {
    @Test func aPostgreSQLStoreWaitsUntilItsGroupRunsItThenAnswersAndFailsClearlyOnceItStopped() async throws {
        let url = try await LocalPostgres.shared().newDatabaseURL()
        let lines = LogLines()
        let logger = Logger(label: "store-test") { _ in CapturingHandler(lines: lines) }
        let store = try PostgresLedgerStore(url: url, logger: logger, notRunningWarningAfter: .milliseconds(300))
        let migrated = AwaitableState(false)
        let warning = "the PostgreSQL ledger store is used but does not run"
        func warnings() -> Int { lines.all.filter { "\($0["message"] ?? "")".hasPrefix(warning) }.count }

        try await withThrowingTaskGroup(of: Void.self) { tasks in
            // Used before anything runs it: the migration waits, and the log says why.
            tasks.addTask {
                try await store.migrate()
                migrated.update { $0 = true }
            }
            #expect(try await eventually(timeout: .seconds(10)) { warnings() == 1 }, "\(lines.all)")
            #expect(!migrated.value, "no answer while the store does not run")

            let group = ServiceGroup(configuration: .init(services: [store], logger: TestBroker.quietLogger()))
            tasks.addTask { try await group.run() }
            #expect(await migrated.wait(until: { $0 }, timeout: .seconds(30)), "the waiting migration went on")
            #expect(try await store.schemaVersion() == PostgresLedgerDatabase.migrations.last?.version)
            #expect(warnings() == 1, "said once")

            // Run twice (a group and withRunning, say): a clear error, not postgres-nio's precondition.
            await #expect {
                try await store.run()
            } throws: { error in
                (error as? LedgerStoreError)?.code == .notRunning && "\(error)".contains("runs once")
            }

            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        await #expect {
            try await store.schemaVersion()
        } throws: { error in
            (error as? LedgerStoreError)?.code == .notRunning && "\(error)".contains("stopped")
        }
        try await store.close()
    }

    @Test func withRunningStopsTheStoreWhenItsBodyEndsOrThrows() async throws {
        struct Refused: Error {}
        let url = try await LocalPostgres.shared().newDatabaseURL()
        let store = try PostgresLedgerStore(url: url, logger: TestBroker.quietLogger())
        await #expect(throws: Refused.self) {
            try await store.withRunning {
                try await store.migrate()
                throw Refused()
            }
        }
        await #expect(throws: LedgerStoreError.self, "the body threw, and the store stopped with it") {
            try await store.schemaVersion()
        }

        try await withSQLiteStore { sqlite, _ in
            // Nothing to run: answers either way, and its run() ends with its task.
            let version = try await sqlite.withRunning {
                try await sqlite.migrate()
                return try await sqlite.schemaVersion()
            }
            #expect(version == PostgresLedgerDatabase.migrations.last?.version)
            #expect(try await sqlite.schemaVersion() == version)
        }
    }
}
