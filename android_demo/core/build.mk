# android_demo/core: the plain-Java core of the Android app (FRAME_FORMAT.md codec, fusion-graph reader,
# handshake, peer scheduler), compiled with javac and tested with JUnit 5, all from Debian packages.
# Included by the top Makefile; `make test` builds it before the tests, and
# tests/android_demo/test_java_core.py runs its JUnit suite and the cross-language parity test.
DEBIAN_PACKAGES += junit5 libandroid-json-java openjdk-17-jdk-headless
PHONE_TARGETS += java-core

JAVA_CORE := android_demo/core
JAVA_CORE_BUILD := $(JAVA_CORE)/build
# Android's own org.json (libandroid-json-java), so the core parses JSON as the phone will.
JAVA_CORE_JSON := /usr/share/java/com.android.json.jar
JAVA_CORE_JUNIT := /usr/share/java/junit-platform-console-standalone.jar
JAVA_CORE_MAIN_SRC := $(shell find $(JAVA_CORE)/src/main/java -name '*.java' 2>/dev/null | sort)
JAVA_CORE_TEST_SRC := $(shell find $(JAVA_CORE)/src/test/java -name '*.java' 2>/dev/null | sort)

.PHONY: java-core java-core-classes java-core-test

# What `make test` runs: the Debian packages, then the (incremental) build.
java-core: system-packages java-core-classes

# The build alone (the pytest calls this one: no apt, no root).
java-core-classes: $(JAVA_CORE_BUILD)/main.stamp $(JAVA_CORE_BUILD)/test.stamp

# Main sources compile against the Java 8 API (--release 8): the language level and library Android's
# toolchain takes on API 26+, so a java.net.http, a record or a `var` fails here, not in Android Studio.
$(JAVA_CORE_BUILD)/main.stamp: $(JAVA_CORE_MAIN_SRC) $(JAVA_CORE)/build.mk
	rm -rf $(JAVA_CORE_BUILD)/classes && mkdir -p $(JAVA_CORE_BUILD)/classes
	javac --release 8 -Xlint:all -Xlint:-options -Werror -encoding UTF-8 -d $(JAVA_CORE_BUILD)/classes \
	  -cp $(JAVA_CORE_JSON) $(JAVA_CORE_MAIN_SRC)
	touch $@

# Tests run on this machine only: Java 17 with JUnit 5.
$(JAVA_CORE_BUILD)/test.stamp: $(JAVA_CORE_BUILD)/main.stamp $(JAVA_CORE_TEST_SRC)
	rm -rf $(JAVA_CORE_BUILD)/test-classes && mkdir -p $(JAVA_CORE_BUILD)/test-classes
	javac --release 17 -encoding UTF-8 -d $(JAVA_CORE_BUILD)/test-classes \
	  -cp $(JAVA_CORE_BUILD)/classes:$(JAVA_CORE_JSON):$(JAVA_CORE_JUNIT) $(JAVA_CORE_TEST_SRC)
	touch $@

# The JUnit suite by hand (the pytest runs the same command).
java-core-test: java-core-classes
	java -jar $(JAVA_CORE_JUNIT) --disable-banner --details=summary --fail-if-no-tests \
	  -cp $(JAVA_CORE_BUILD)/classes:$(JAVA_CORE_BUILD)/test-classes:$(JAVA_CORE_JSON) \
	  --select-package org.paradis.core
