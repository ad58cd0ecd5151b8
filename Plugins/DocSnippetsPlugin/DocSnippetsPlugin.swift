import Foundation
import PackagePlugin

/// Compiles the Swift blocks of README.md and docs/*.md: `doc-snippets` extracts them into one source file of the
/// `DocSnippets` target at every build where a document changed, so a block that stops compiling fails the build
/// (and `make test`). The text and the compiled code are one thing.
@main
struct DocSnippetsPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let root = context.package.directoryURL
        let docs = try FileManager.default.contentsOfDirectory(
            at: root.appendingPathComponent("docs"), includingPropertiesForKeys: nil
        )
        .filter { $0.pathExtension == "md" }
        .sorted { $0.path < $1.path }
        let inputs = [root.appendingPathComponent("README.md")] + docs
        let output = context.pluginWorkDirectoryURL.appendingPathComponent("Snippets.swift")
        return [
            .buildCommand(
                displayName: "Extracting the Swift blocks of README.md and docs/",
                executable: try context.tool(named: "doc-snippets").url,
                arguments: [output.path] + inputs.map(\.path),
                inputFiles: inputs,
                outputFiles: [output])
        ]
    }
}
