package org.nis2triage.esanalysis;

import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

import org.apache.lucene.analysis.LowerCaseFilter;
import org.apache.lucene.analysis.TokenStream;
import org.apache.lucene.analysis.email.UAX29URLEmailTokenizer;
import org.apache.lucene.analysis.miscellaneous.RemoveDuplicatesTokenFilter;
import org.apache.lucene.analysis.pattern.PatternCaptureGroupTokenFilter;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.index.analysis.TokenFilterFactory;
import org.elasticsearch.index.analysis.TokenizerFactory;
import org.elasticsearch.indices.analysis.AnalysisModule.AnalysisProvider;
import org.elasticsearch.plugins.AnalysisPlugin;
import org.elasticsearch.plugins.Plugin;

/**
 * The four analysis components that the security index's "email" analyzer names, for
 * Elasticsearch's integration-test distribution, which ships without the analysis-common
 * module. Without them the node cannot create its security index, so native roles, users
 * and API keys cannot be stored. Each component wraps the Lucene class that implements it
 * (lucene-analysis-common is already on the node's class path).
 *
 * Only what the security index uses is supported: `pattern_capture` reads `patterns` and
 * `preserve_original`; `unique` drops repeats at the same position only, which is what the
 * email analyzer produces. This plugin is for the local development and test node; a
 * production cluster has the real module.
 */
public final class SecurityAnalysisPlugin extends Plugin implements AnalysisPlugin {

    @Override
    public Map<String, AnalysisProvider<TokenizerFactory>> getTokenizers() {
        return Map.of("uax_url_email", (index, env, name, settings) -> emailTokenizer(name, settings));
    }

    @Override
    public Map<String, AnalysisProvider<TokenFilterFactory>> getTokenFilters() {
        return Map.of(
            "pattern_capture", AnalysisPlugin.requiresAnalysisSettings(
                (index, env, name, settings) -> patternCapture(name, settings)),
            "lowercase", (index, env, name, settings) -> filter(name, LowerCaseFilter::new),
            "unique", (index, env, name, settings) -> filter(name, RemoveDuplicatesTokenFilter::new)
        );
    }

    private static TokenizerFactory emailTokenizer(String name, Settings settings) {
        int maxLength = settings.getAsInt("max_token_length", 255);
        return TokenizerFactory.newFactory(name, () -> {
            UAX29URLEmailTokenizer tokenizer = new UAX29URLEmailTokenizer();
            tokenizer.setMaxTokenLength(maxLength);
            return tokenizer;
        });
    }

    private static TokenFilterFactory patternCapture(String name, Settings settings) {
        List<String> regexes = settings.getAsList("patterns");
        if (regexes.isEmpty()) {
            throw new IllegalArgumentException("pattern_capture filter [" + name + "] needs [patterns]");
        }
        Pattern[] patterns = regexes.stream().map(Pattern::compile).toArray(Pattern[]::new);
        boolean preserve = settings.getAsBoolean("preserve_original", true);
        return filter(name, in -> new PatternCaptureGroupTokenFilter(in, preserve, patterns));
    }

    private static TokenFilterFactory filter(String name, java.util.function.UnaryOperator<TokenStream> wrap) {
        return new TokenFilterFactory() {
            @Override
            public String name() {
                return name;
            }

            @Override
            public TokenStream create(TokenStream in) {
                return wrap.apply(in);
            }
        };
    }
}
