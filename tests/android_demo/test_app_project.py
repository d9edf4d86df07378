"""The Android Studio project (android_demo/app) checked statically.

No Android SDK, android.jar or LiteRT AAR can be obtained on these machines
(DESIGN.md), so the app cannot be compiled here. What can be checked without
them is checked: the manifest names classes that exist, the app uses only
public names the core (android_demo/core, compiled and tested here) really
has, every resource the code names exists, the Gradle build pins every
version and compiles the core's one source tree, and the manifest asks for
the permissions the app needs; and javac type-checks the app's sources
against the core's, every error allowed only where an Android or LiteRT name
is missing.
"""

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "android_demo" / "app"
MODULE = APP / "app"
SRC = MODULE / "src" / "main"
CORE_SRC = REPO / "android_demo" / "core" / "src" / "main" / "java" / "org" / "paradis" / "core"
ANDROID = "{http://schemas.android.com/apk/res/android}"
JSON_JAR = "/usr/share/java/com.android.json.jar"


def _java_files() -> list:
    files = sorted((SRC / "java").rglob("*.java"))
    assert files, f"no Java sources under {SRC / 'java'}"
    return files


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)  # string contents are not code


def _manifest() -> ET.Element:
    return ET.parse(SRC / "AndroidManifest.xml").getroot()


def test_manifest_components_exist_as_java_classes_of_the_right_kind():
    root = _manifest()
    package = "org.paradis.app"  # the namespace in app/build.gradle
    assert re.search(r"namespace\s+'org\.paradis\.app'", (MODULE / "build.gradle").read_text())
    app = root.find("application")
    kinds = {"activity": r"extends\s+Activity\b", "service": r"extends\s+Service\b"}
    seen = []
    for tag, base in kinds.items():
        for node in app.findall(tag):
            name = node.get(ANDROID + "name")
            full = package + name if name.startswith(".") else name
            path = SRC / "java" / (full.replace(".", "/") + ".java")
            assert path.is_file(), f"AndroidManifest.xml names {tag} {name}, but {path} is missing"
            text = _strip_comments(path.read_text())
            simple = full.rsplit(".", 1)[1]
            assert re.search(rf"public\s+(final\s+)?class\s+{simple}\s+{base}", text), (
                f"{path.name} does not declare a public class {simple} extending the {tag}'s Android base class")
            seen.append(simple)
    launcher = [a for a in app.findall("activity")
                if any(c.get(ANDROID + "name") == "android.intent.category.LAUNCHER" for c in a.iter("category"))]
    assert len(launcher) == 1, "exactly one launcher activity"
    assert {"MainActivity", "ResultActivity", "PeerStatusActivity", "PeerService"} <= set(seen), seen


def test_manifest_asks_for_network_camera_and_foreground_service_permissions():
    root = _manifest()
    granted = {p.get(ANDROID + "name").rsplit(".", 1)[1] for p in root.findall("uses-permission")}
    needed = {"INTERNET", "ACCESS_NETWORK_STATE", "ACCESS_WIFI_STATE", "CHANGE_WIFI_MULTICAST_STATE", "CAMERA",
              "FOREGROUND_SERVICE", "FOREGROUND_SERVICE_CONNECTED_DEVICE"}
    assert needed <= granted, f"missing permissions: {sorted(needed - granted)}"
    service = _manifest().find("application").find("service")
    # Android 14+ refuses startForeground without a declared type; the service passes the same one in code.
    assert service.get(ANDROID + "foregroundServiceType") == "connectedDevice"
    code = (SRC / "java" / "org" / "paradis" / "app" / "PeerService.java").read_text()
    assert "FOREGROUND_SERVICE_TYPE_CONNECTED_DEVICE" in code


def core_public_api() -> dict:
    """Core class name -> the public member names its source declares (fields, methods, nested types)."""
    api = {}
    for path in sorted(CORE_SRC.glob("*.java")):
        text = _strip_comments(path.read_text())
        name = path.stem
        if not re.search(rf"public\s+(final\s+|abstract\s+)*(class|interface|enum)\s+{name}\b", text):
            continue  # package-private: the app cannot use it
        members = set(re.findall(r"public\s+(?:static\s+|final\s+|abstract\s+|synchronized\s+)*"
                                 r"(?:class|interface|enum)\s+(\w+)", text))
        members |= set(re.findall(r"public\s+(?:static\s+|final\s+|synchronized\s+)*[\w<>\[\],.? ]+?\s+(\w+)\s*[(;=]",
                                  text))
        members |= set(re.findall(r"public\s+(\w+)\s*\(", text))  # constructors
        # Interface methods are public without the word.
        if re.search(rf"interface\s+{name}\b", text):
            method = r"^\s+(?:default\s+)?[\w<>\[\],.? ]+\s+(\w+)\s*\([^;{]*\)\s*(?:throws[^;{]*)?[;{]"
            members |= set(re.findall(method, text, flags=re.M))
        for nested in re.findall(r"(?:public\s+)?(?:static\s+)?interface\s+(\w+)", text):
            members.add(nested)
        api[name] = members
    return api


def core_uses(text: str) -> list:
    """(class, member or None) for every org.paradis.core name a Java source uses: its imports, fully
    qualified references, and Class.member on the classes it imported from the core."""
    code = _strip_comments(text)
    imported = re.findall(r"^import\s+org\.paradis\.core\.(\w+)\s*;", code, flags=re.M)
    uses = [(c, None) for c in imported]
    body = re.sub(r"^import[^\n]*\n", "", code, flags=re.M)
    for c, member in re.findall(r"\borg\.paradis\.core\.(\w+)(?:\.(\w+))?", body):
        uses.append((c, member or None))
    for c in imported:
        for member in re.findall(rf"(?<![\w.]){c}\.(\w+)", body):
            uses.append((c, member))
    return uses


def unknown_core_uses(text: str, api: dict) -> list:
    bad = []
    for c, member in core_uses(text):
        if c not in api:
            bad.append(f"org.paradis.core.{c} (no public class of that name in the core)")
        elif member is not None and member != "class" and member not in api[c]:
            bad.append(f"{c}.{member} (the core's {c} declares no public {member})")
    return bad


def test_the_checker_catches_a_core_name_that_does_not_exist():
    api = core_public_api()
    assert {"Coordinator", "Peer", "Engine", "InputTensor", "Bundle", "PeerConfig"} <= set(api), sorted(api)
    wrong = ("import org.paradis.core.Coordinator;\nimport org.paradis.core.Teleporter;\n"
             "class X { void f() { Coordinator.warp(); org.paradis.core.Bundle.id(null); "
             "org.paradis.core.Bundle.nope(); } }\n")
    assert sorted(unknown_core_uses(wrong, api)) == sorted([
        "org.paradis.core.Teleporter (no public class of that name in the core)",
        "Coordinator.warp (the core's Coordinator declares no public warp)",
        "Bundle.nope (the core's Bundle declares no public nope)",
    ])


def test_the_app_uses_only_public_core_names_that_exist():
    api = core_public_api()
    problems = {}
    used = set()
    for path in _java_files():
        text = path.read_text()
        used |= {c for c, _ in core_uses(text)}
        bad = unknown_core_uses(text, api)
        if bad:
            problems[path.name] = bad
    assert not problems, problems
    # The app really sits on the core: the coordinator, the peer, the engine interface, the input tensor.
    assert {"Coordinator", "Peer", "Engine", "InputTensor", "PeerConfig", "Addresses"} <= used, sorted(used)


def javac_errors(stderr: str) -> list:
    """javac's error records: (file, line, message, the detail lines after it)."""
    records = []
    for line in stderr.splitlines():
        m = re.match(r"^(.+\.java):(\d+): error: (.*)$", line)
        if m:
            records.append([m.group(1), int(m.group(2)), m.group(3), []])
        elif records:
            records[-1][3].append(line)
    return records


def test_app_sources_type_check_against_the_core_where_android_is_absent(tmp_path):
    """javac on the core and the app's sources together, without android.jar or LiteRT: every error must be
    a missing Android/LiteRT name (a missing package, a symbol not found outside the core, an @Override of an
    Android method). Syntax errors and any misuse of a core class javac can attribute (a method that does
    not exist, wrong argument types, an unhandled core exception) fail. Lambdas handed to Android methods
    have no target type here and go unchecked. A probe file with a wrong core call proves the check bites."""
    javac = shutil.which("javac")
    assert javac and Path(JSON_JAR).is_file(), "javac and Debian's libandroid-json-java: `make system-packages`"
    probe = tmp_path / "Probe.java"
    probe.write_text("package org.paradis.app;\nimport org.paradis.core.Coordinator;\n"
                     "final class Probe {\n    static int f(Coordinator c) throws Exception {\n"
                     "        return c.runn(new float[1], 1).argmax();\n    }\n}\n")
    core = sorted(CORE_SRC.glob("*.java"))
    done = subprocess.run([javac, "--release", "17", "-proc:none", "-Xmaxerrs", "100000", "-encoding", "UTF-8",
                           "-d", str(tmp_path / "classes"), "-cp", JSON_JAR,
                           *map(str, core), *map(str, _java_files()), str(probe)],
                          capture_output=True, text=True, timeout=300)
    core_names = "|".join(p.stem for p in core)
    core_location = re.compile(rf"location: (class|interface|variable \w+ of type) (org\.paradis\.core\.)?"
                               rf"({core_names})\b")
    unexpected, probe_caught = [], False
    for path, line, message, detail in javac_errors(done.stderr):
        where = f"{Path(path).name}:{line}: {message} {' '.join(d.strip() for d in detail[-2:])}"
        if Path(path).name == "Probe.java":
            probe_caught |= message == "cannot find symbol" and any("runn" in d for d in detail)
            continue
        if Path(path).parent == CORE_SRC:
            unexpected.append(where)  # the core compiles with no Android at all
        elif re.fullmatch(r"package (android|org\.tensorflow\.lite)(\.\w+)* does not exist", message):
            continue
        elif (m := re.fullmatch(r"package ([A-Z]\w*)(\.\w+)* does not exist", message)) and \
                m.group(1) not in core_names.split("|"):
            continue  # WifiManager.MulticastLock and the like: a nested type of an absent Android class
        elif message == "method does not override or implement a method from a supertype":
            continue  # onCreate and the like: the Android supertype is absent here
        elif message == "cannot find symbol" and not any(core_location.search(d) for d in detail):
            continue
        else:
            unexpected.append(where)
    assert probe_caught, f"javac did not flag the probe's Coordinator.runn:\n{done.stderr[-3000:]}"
    assert not unexpected, unexpected


def test_resources_named_in_code_exist():
    res = SRC / "res"
    layouts = {p.stem for p in (res / "layout").glob("*.xml")}
    ids = set()
    for p in (res / "layout").glob("*.xml"):
        ids |= set(re.findall(r'@\+id/(\w+)', p.read_text()))
    strings = set(re.findall(r'<string name="(\w+)"', (res / "values" / "strings.xml").read_text()))
    missing = []
    for path in _java_files():
        code = _strip_comments(path.read_text())
        missing += [f"{path.name}: R.layout.{n}" for n in re.findall(r"\bR\.layout\.(\w+)", code) if n not in layouts]
        missing += [f"{path.name}: R.id.{n}" for n in re.findall(r"\bR\.id\.(\w+)", code) if n not in ids]
        missing += [f"{path.name}: R.string.{n}" for n in re.findall(r"\bR\.string\.(\w+)", code) if n not in strings]
    for path in [SRC / "AndroidManifest.xml", *(res / "layout").glob("*.xml")]:
        missing += [f"{path.name}: @string/{n}" for n in re.findall(r"@string/(\w+)", path.read_text())
                    if n not in strings]
    assert not missing, missing


GRADLE = ["settings.gradle", "build.gradle", "core/build.gradle", "app/build.gradle"]


@pytest.mark.parametrize("name", GRADLE + ["gradle/wrapper/gradle-wrapper.properties"])
def test_build_files_pin_every_version(name):
    text = (APP / name).read_text()
    code = "\n".join(line.split("//")[0] for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "latest" not in code.lower() and not re.search(r"['\"][\w.\-]+:[\w.\-]+:[^'\"]*\+", code), (
        f"{name} has a floating version")
    for coordinate in re.findall(r"['\"]([\w.\-]+:[\w.\-]+:[^'\"]+)['\"]", code):
        assert re.fullmatch(r"[\w.\-]+:[\w.\-]+:\d+(\.\d+)+", coordinate), f"{name}: {coordinate!r} is not pinned"
    for plugin, version in re.findall(r"id\s+'([\w.]+)'\s+version\s+'([^']+)'", code):
        assert re.fullmatch(r"\d+(\.\d+)+", version), f"{name}: plugin {plugin} version {version!r}"


def test_gradle_build_is_complete_and_consistent():
    settings = (APP / "settings.gradle").read_text()
    assert "include ':core'" in settings and "include ':app'" in settings
    plugins = dict(re.findall(r"id\s+'(com\.android\.\w+)'\s+version\s+'([^']+)'", settings))
    assert set(plugins) == {"com.android.application", "com.android.library"}
    assert len(set(plugins.values())) == 1, plugins  # one Android Gradle Plugin
    wrapper = (APP / "gradle" / "wrapper" / "gradle-wrapper.properties").read_text()
    gradle = re.search(r"distributionUrl=.*gradle-(\d+\.\d+(?:\.\d+)?)-bin\.zip", wrapper)
    assert gradle, wrapper
    app = (MODULE / "build.gradle").read_text()
    assert "implementation project(':core')" in app
    assert re.search(r"implementation\s+'com\.google\.ai\.edge\.litert:litert:\d+\.\d+\.\d+'", app), (
        "the LiteRT dependency (com.google.ai.edge.litert:litert) with a pinned version")
    for module in (app, (APP / "core" / "build.gradle").read_text()):
        assert re.search(r"minSdk\s+26\b", module) and re.search(r"compileSdk\s+\d+", module)
    assert re.search(r"targetSdk\s+\d+", app)
    # LiteRT's runSignature is the API the engine calls.
    engine = (SRC / "java" / "org" / "paradis" / "app" / "LiteRtEngine.java").read_text()
    assert "import org.tensorflow.lite.Interpreter;" in engine and ".runSignature(" in engine


def test_the_core_module_compiles_the_core_source_tree():
    core = (APP / "core" / "build.gradle").read_text()
    dirs = re.findall(r"java\.srcDirs\s*=\s*\[\s*'([^']+)'\s*\]", core)
    assert len(dirs) == 1, core
    tree = (APP / "core" / dirs[0]).resolve()
    assert tree == (REPO / "android_demo" / "core" / "src" / "main" / "java").resolve(), tree
    assert (tree / "org" / "paradis" / "core" / "Coordinator.java").is_file()
    # Nothing but Android itself: no dependencies block with entries.
    assert not re.search(r"^\s*(implementation|api|compileOnly)\b", core, flags=re.M), core
    manifest = re.search(r"manifest\.srcFile\s+'([^']+)'", core)
    assert manifest and (APP / "core" / manifest.group(1)).is_file()


def test_readme_says_what_was_and_was_not_built_here():
    text = (APP / "README.md").read_text()
    for needed in ("Android Studio", "adb install", "adb push", "not built", "gradle wrapper"):
        assert needed.lower() in text.lower(), needed
