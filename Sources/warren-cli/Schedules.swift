import ArgumentParser
import Foundation
import Logging
import Warren
import WarrenAMQP

/// `warren schedules`: the recurring jobs their scheduler's leader lists, and an operator's run now, pause and resume.
struct Schedules: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Recurring jobs: their schedules, last tick, next run and leader; run one now, pause or resume it.",
        subcommands: [List.self, Trigger.self, Pause.self, Resume.self], defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The schedules the scheduler's leader lists (with each one's pause flag read now).")

        @OptionGroup var connection: ConnectionOptions
        @Option(help: "The scheduler's scope (its hosts' --scheduler-scope); none for the unscoped scheduler.")
        var scope: String?
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let directory = try await connection.withTransport { try await $0.scheduleDirectory(scope: scope) }
            guard let directory else {
                if json {
                    print("null")
                } else {
                    print("no scheduler\(scope.map { " of scope \($0)" } ?? "") has led on this broker yet")
                }
                return
            }
            if json {
                try printJSON(directory)
                return
            }
            print("leader: \(column(directory.leaderHost, 0)) since \(iso(directory.leaderSinceMs) ?? "?")")
            print(
                "name                      schedule                         queue                 last tick             next run              state"
            )
            for entry in directory.schedules {
                let spec =
                    entry.kind == "cron"
                    ? "\(entry.expression ?? "") (\(entry.timeZone))" : "every \(entry.intervalSeconds ?? 0) s"
                print(
                    [
                        column(entry.name, 25), column(spec, 32), column(entry.queue, 21),
                        column(iso(entry.lastTickMs) ?? "-", 21), column(iso(entry.nextRunMs) ?? "-", 21),
                        entry.paused ? "paused" : "active",
                    ].joined(separator: " "))
            }
        }
    }

    struct Trigger: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Asks the leader for a run of a schedule now (paused or not), with a message id of its own.")

        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The schedule's state name (its name, or <scope>.<name>).") var schedule: String
        @Option(
            help:
                "The request's id (1–64 of A-Z a-z 0-9 . _ -); the same id twice runs it once with an idempotency store."
        )
        var requestID = "cli-\(UUID().uuidString.lowercased())"

        func run() async throws {
            let user = ProcessInfo.processInfo.environment["USER"] ?? "cli"
            let id = try await connection.withTransport {
                try await $0.triggerSchedule(schedule, requestID: requestID, requestedBy: user)
            }
            print("requested a run of \(schedule) now (request \(id))")
        }
    }

    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Pauses a schedule: its leader publishes no run until it is resumed (from its next tick).")

        @OptionGroup var schedule: ScheduleName

        func run() async throws { try await schedule.setPaused(true) }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Resumes a paused schedule (missed ticks are not run).")

        @OptionGroup var schedule: ScheduleName

        func run() async throws { try await schedule.setPaused(false) }
    }

    /// The broker and the schedule that pausing and resuming name.
    struct ScheduleName: ParsableArguments {
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The schedule's state name (its name, or <scope>.<name>).") var schedule: String

        func setPaused(_ paused: Bool) async throws {
            try await connection.withTransport { try await $0.setSchedulePaused(paused, schedule: schedule) }
            print("\(paused ? "paused" : "resumed") \(schedule)")
        }
    }
}

private func iso(_ milliseconds: Int64?) -> String? {
    guard let milliseconds, (0...253_402_300_799_999).contains(milliseconds) else { return nil }
    return Date(timeIntervalSince1970: TimeInterval(milliseconds) / 1000).formatted(.iso8601)
}

/// `text` padded to `width`, its control characters (which a directory written by anyone could hold: escape
/// sequences for the terminal) shown as `?`.
private func column(_ text: String, _ width: Int) -> String {
    let printable = String(
        String.UnicodeScalarView(text.unicodeScalars.map { $0.properties.generalCategory == .control ? "?" : $0 }))
    return printable.count >= width ? printable : printable.padding(toLength: width, withPad: " ", startingAt: 0)
}
