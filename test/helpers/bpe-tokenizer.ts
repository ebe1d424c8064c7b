// tokenizer.json for tests: a GPT-2-style byte-level BPE with <s> </s> <pad>, built from
// a given vocabulary and merge list, optionally with a <s> … </s> template.
export const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
export const template = (...pieces: string[]) =>
  pieces.map((p) => (p === '$A' ? { Sequence: { id: 'A', type_id: 0 } } : { SpecialToken: { id: p, type_id: 0 } }));

export function byteLevelBpe(vocab: Record<string, number>, merges: string[], withTemplate: boolean): object {
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(0, '<s>'), special(1, '</s>'), special(2, '<pad>')],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: withTemplate
      ? {
          type: 'TemplateProcessing',
          single: template('<s>', '$A', '</s>'),
          pair: template('<s>', '$A', '</s>', '$A', '</s>'),
          special_tokens: { '<s>': { id: '<s>', ids: [0], tokens: ['<s>'] }, '</s>': { id: '</s>', ids: [1], tokens: ['</s>'] } },
        }
      : null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}
