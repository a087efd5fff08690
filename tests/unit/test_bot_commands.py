"""Commands in what patients write: stop and "a person, please" in five languages, whole or inside sentences,
a template's opt-out button; and the sentences that merely contain such a word and are no command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connector.bot.commands import fold, parse_phrase
from connector.bot.engine import OptedOut
from connector.bot.flows import load_flows
from core.errors import ConfigurationError
from tests.paths import FLOWS as SHIPPED_FLOWS
from tests.unit.test_bot_engine import FLOWS, Chat

#: what patients wrote to opt out, as they write it
STOP = {
    "en": ["STOP", "Stop.", "stop please", "Unsubscribe", "please stop messaging me", "Stop texting me!!",
           "can you stop sending me messages", "Don't message me again", "do not contact me anymore",
           "no more messages please", "I want to unsubscribe", "remove me from your list", "Stop promotions",
           "leave me alone", "opt me out", "please stop these messages, I am not interested",
           "I don't want any more messages from you", "How can I stop receiving these messages?"],
    "tr": ["İPTAL", "iptal", "IPTAL", "ıptal", "DUR", "bana bir daha yazmayın", "Lütfen bana mesaj atmayın",
           "mesaj istemiyorum", "aboneliğimi iptal edin", "beni listeden çıkarın", "Promosyonları durdur",
           "artık mesaj göndermeyi bırakın", "rahatsız etmeyin lütfen", "numaramı silin",
           "bir daha yazmanızı istemiyorum", "beni rahat bırakın", "reklam istemiyorum"],
    "de": ["STOPP", "stopp", "Abmelden", "Schreiben Sie mir nicht mehr", "bitte nicht mehr schreiben",
           "keine Nachrichten mehr bitte", "Ich möchte keine Werbung", "Hören Sie auf, mir zu schreiben",
           "ich möchte mich abmelden", "Werbung stoppen", "bitte tragen Sie mich aus der Liste aus",
           "Lassen Sie mich in Ruhe", "keine weiteren Nachrichten", "Newsletter abbestellen", "stopp, keine Werbung",
           "Ich will keine Nachrichten von Ihnen", "Schreibt mir nicht mehr"],
    "ru": ["СТОП", "стоп", "Отписаться", "хватит", "не пишите мне больше", "Пожалуйста, не присылайте мне сообщения",
           "хватит мне писать", "перестаньте присылать рекламу", "хочу отписаться от рассылки", "отпишите меня",
           "удалите меня из списка", "Остановить рекламу", "не хочу получать сообщения", "оставьте меня в покое",
           "прекратите спамить", "мне не нужны сообщения", "Отписаться!"],
    "ar": ["توقف", "تَوَقَّفْ", "تـوقـف", "إلغاء الاشتراك", "الغاء الاشتراك", "إلغـاء الإشتراك", "توقفوا عن مراسلتي",
           "لا ترسلوا لي رسائل", "لا تراسلوني مرة أخرى", "أريد إلغاء الاشتراك", "إيقاف العروض الترويجية",
           "لا أريد رسائل", "كفى رسائل", "اتركوني في حالي", "توقفوا عن إرسال الرسائل", "من فضلك لا تكتبوا لي",
           "أوقفوا الرسائل", "احذفوني من القائمة"],
}
#: what patients wrote to reach a person
HUMAN = {
    "en": ["can I speak to a real person please?", "I want to talk to a human", "connect me to an agent",
           "Is there someone I can talk to?", "I'd like to speak with a coordinator",
           "put me through to a representative", "live agent please", "could you call me back?", "I need an operator",
           "let me chat with someone", "talk to a person", "I want a real person, not a bot"],
    "tr": ["bir temsilciyle görüşmek istiyorum", "yetkili biriyle konuşabilir miyim?", "beni bir insana bağlayın",
           "canlı destek", "gerçek bir insanla konuşmak istiyorum", "koordinatörle görüşmek istiyorum",
           "müşteri temsilcisi lütfen", "beni arar mısınız", "bir danışmanla konuşmak istiyorum", "TEMSİLCİ"],
    "de": ["ich möchte mit einem Menschen sprechen", "Kann ich mit jemandem sprechen?",
           "verbinden Sie mich bitte mit einem Mitarbeiter", "einen echten Menschen bitte",
           "Ich will mit einem Berater reden", "Rufen Sie mich bitte an", "Rückruf bitte", "Mitarbeiter",
           "sprechen mit einem Koordinator möglich?"],
    "ru": ["хочу поговорить с оператором", "соедините меня с живым человеком", "позовите менеджера",
           "можно связаться с координатором?", "Оператор!", "мне нужен живой человек", "перезвоните мне",
           "дайте поговорить со специалистом", "хочу пообщаться с консультантом"],
    "ar": ["أريد التحدث مع موظف", "ممكن أكلم أحد؟", "حولني إلى موظف", "أريد شخص حقيقي", "خدمة العملاء",
           "أبغى أتكلم مع منسق", "اتصلوا بي من فضلك", "بدي احكي مع حدا", "موظف", "أريد التواصل مع مستشار"],
}
#: what merely contains such a word, and is an answer or a question
NEITHER = {
    "en": ["can I stop taking my medication before the operation?", "I will stop smoking two weeks before",
           "is the first consultation free?", "Berlin", "How much does a hair transplant cost?",
           "my friend told me about you", "I don't want to talk to anyone yet, just send the price",
           "is the doctor a real person or AI?", "Do you have a bus stop near the hotel?",
           "I need to cancel my appointment", "when should I stop eating before surgery?",
           "please don't contact me on weekends", "don't message me before 10am", "the person I spoke to was nice",
           "Can my husband come with me?", "I'd like to speak English", "I want to know the price for teeth",
           "no, I don't need a representative", "My son is 12", "can you send me more photos?",
           "I want to stop hair loss", "How do I stop the swelling after surgery?", "I stopped smoking last year",
           "Talk about prices", "Our agent in Germany recommended you", "Do you speak Arabic?",
           "we are a travel agent", "stop the bleeding"],
    "tr": ["ameliyattan önce ilaçlarımı bırakmalı mıyım?", "randevumu iptal etmek istiyorum", "ne kadar tutar?",
           "İstanbul", "sigarayı bırakmam gerekiyor mu", "ilk muayene ücretsiz mi?", "hafta sonu yazmayın lütfen",
           "temsilciyle görüşmek istemiyorum, sadece fiyat", "insanlar memnun mu?", "durum nedir",
           "kaç gün kalmam gerekiyor?", "yazmayı unuttum, adım Ayşe", "Berlin'de yaşıyorum",
           "mesajınızı aldım teşekkürler", "otel dahil mi?", "doktorla ne zaman görüşürüm", "Can Yılmaz",
           "Saç dökülmesini durdurmak istiyorum", "Temsilcimiz Almanya'da mı?", "Biri bana bu klinikten bahsetti",
           "Randevuyu iptal edin lütfen", "Dur bir dakika, eşime soracağım",
           "yazmayı bilmiyorum, sesli mesaj atabilir miyim"],
    "de": ["Kann ich meine Medikamente vor der Operation absetzen?", "Ich habe keine Nachricht bekommen",
           "Wie viel kostet das?", "München", "Wann muss ich mit dem Rauchen aufhören?", "Ist die Beratung kostenlos?",
           "ich möchte den Termin absagen", "Ich muss nicht mit jemandem sprechen, schicken Sie nur den Preis",
           "Sprechen Sie Deutsch?", "Haben Sie Parkplätze?", "Mein Mann möchte mitkommen",
           "Schreiben Sie mir nicht vor 10 Uhr", "Wer ist der Arzt?", "Ich wohne in Wien, Österreich",
           "Die Klinik ist schön", "keine Ahnung", "Ich möchte mit meinem Mann kommen",
           "Ich habe mit jemandem aus Ihrer Klinik gesprochen", "Kein Problem, danke", "Ich will nicht mehr warten",
           "Meine Tochter schreibt nicht mehr"],
    "ru": ["можно ли прекратить пить лекарства перед операцией?", "сколько это стоит?", "Москва",
           "вы мне не присылали ссылку", "я не хочу говорить с оператором, просто пришлите цену",
           "сколько человек в палате?", "когда нужно бросить курить?", "первая консультация бесплатная?",
           "я живу в Алматы", "говорите по-русски?", "не пишите мне в выходные", "хочу отменить запись",
           "спасибо, всё понятно", "мой муж приедет со мной", "как долго длится операция?", "Иван Петров",
           "Я перестала принимать таблетки", "Мы хотим поговорить о цене", "Нас будет два человека",
           "Сколько стоит поговорить с врачом?", "хватит ли одного дня?"],
    "ar": ["هل يمكنني التوقف عن تناول الدواء قبل العملية؟", "كم السعر؟", "دبي", "هل الاستشارة الأولى مجانية؟",
           "أريد إلغاء الموعد", "لا أريد التحدث مع موظف، فقط أرسلوا السعر", "متى يجب أن أتوقف عن التدخين؟",
           "أنا من الرياض", "شكرا جزيلا", "هل الفندق مشمول؟", "محمد أحمد", "كم يوم أحتاج للبقاء؟",
           "لا ترسل الصور هنا، سأرسلها بالبريد", "وصلتني رسالتكم", "زوجي سيأتي معي", "ما هي مدة العملية؟",
           "أريد إيقاف تساقط الشعر", "توقفت عن التدخين", "سأتحدث مع زوجي", "أحد أصدقائي نصحني بكم",
           "لا أريد عملية جراحية"],
}
#: a marketing template's opt-out button as WhatsApp delivers it (``button.text`` and ``button.payload``)
OPT_OUT_BUTTONS = [("en", "Stop promotions", "STOP_PROMOTIONS"), ("tr", "Promosyonları durdur", "Promosyonları durdur"),
                   ("de", "Werbung stoppen", "marketing-opt-out"), ("ar", "إيقاف العروض الترويجية", "opt_out"),
                   ("ru", "Остановить рекламу", "Остановить рекламу"), ("en", "Unsubscribe", "Unsubscribe")]


def _cases(table: dict[str, list[str]], expected: str | None) -> list[Any]:
    return [pytest.param(text, expected, id=f"{lang}-{n}") for lang, texts in table.items()
            for n, text in enumerate(texts)]


def test_enough_sentences_in_every_language_both_ways() -> None:
    for language in ("tr", "en", "de", "ar", "ru"):
        assert len(STOP[language]) + len(HUMAN[language]) >= 15 and len(NEITHER[language]) >= 15


@pytest.mark.parametrize("flow", sorted(FLOWS))
@pytest.mark.parametrize(("text", "expected"), _cases(STOP, "stop") + _cases(HUMAN, "human")
                         + _cases(NEITHER, None))
def test_what_patients_write_is_read_as_the_command_it_is(flow: str, text: str, expected: str | None) -> None:
    assert FLOWS[flow].commands.intents().find(text) == expected


def test_folding_forgives_case_diacritics_and_script_variants() -> None:
    assert {fold(w) for w in ("İPTAL", "IPTAL", "ıptal", "iptal", "Iptal")} == {"iptal"}
    assert fold("Görüşmek İSTİYORUM") == fold("gorusmek istiyorum") == "gorusmek istiyorum"
    # harakat, tatweel and the forms of alef are one word
    assert fold("إِلْغَاء الاشْتِرَاك") == fold("الغـــاء الإشتراك") == fold("ألغاء الاشتراك") == "الغاء الاشتراك"
    assert fold("Ещё раз, ПОЖАЛУЙСТА") == "еще раз пожалуиста"
    assert fold("Schreiben Sie mir NICHT mehr!!!") == "schreiben sie mir nicht mehr"
    assert fold("don't") == "dont" and fold("STOP_PROMOTIONS".replace("_", " ")) == "stop promotions"


def test_a_phrase_that_is_not_words_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not one word"):
        parse_phrase("talk .. real-person")
    with pytest.raises(ValueError, match="no words"):
        parse_phrase(" .. ")
    text = (SHIPPED_FLOWS / "meeting_request.yaml").read_text(encoding="utf-8")
    text = text.replace('      - "leave me alone"\n', '      - "leave me alone"\n      - "stop ** e-mail"\n', 1)
    (tmp_path / "meeting_request.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        load_flows(tmp_path)
    (problem,) = info.value.problems
    assert "meeting_request.yaml:" in str(problem) and ": commands.stop_phrases.en." in str(problem)
    assert "'**' in 'stop ** e-mail' is not one word" in str(problem)


@pytest.mark.parametrize(("language", "label", "payload"), OPT_OUT_BUTTONS)
def test_a_templates_opt_out_button_opts_out_like_typing_stop(language: str, label: str, payload: str) -> None:
    chat = Chat("health_tourism_intake", language=language)
    chat.send("Hi")
    replies = chat.send(label, choice=payload, raw_type="button")
    assert replies == [chat.flow.texts["stopped"][language]]
    assert chat.conv.opted_out and any(isinstance(e, OptedOut) for e in chat.events)
    assert chat.send("hello?") == []


def test_another_template_button_is_an_answer_not_a_command() -> None:
    chat = Chat("health_tourism_intake", language="en")
    chat.send("Hi")
    assert chat.send("Dental care", choice="dental", raw_type="button") == ["Which country and city do you live in?"]
    assert not chat.conv.opted_out and chat.conv.answers["treatment"] == "dental"


def _at_location(language: str) -> Chat:
    chat = Chat("health_tourism_intake", language=language)
    chat.send("Hi")
    chat.send("Dental", choice="dental")
    assert chat.conv.step == "location"
    return chat


@pytest.mark.parametrize(("language", "text"), [
    ("en", "can I speak to a real person please?"), ("de", "ich möchte mit einem Menschen sprechen"),
    ("tr", "bir temsilciyle görüşmek istiyorum"), ("ru", "хочу поговорить с оператором"),
    ("ar", "أريد التحدث مع موظف")])
def test_asking_for_a_person_mid_flow_hands_over_and_is_never_an_answer(language: str, text: str) -> None:
    chat = _at_location(language)
    (reply,) = chat.send(text)
    assert "#1042" in reply and chat.conv.status == "handoff"
    assert "location" not in chat.conv.answers and chat.leads[0].handoff_reason == "patient_request"


@pytest.mark.parametrize(("language", "text"), [
    ("en", "please stop messaging me"), ("tr", "bana bir daha yazmayın"), ("tr", "İPTAL"), ("tr", "ıptal"),
    ("ar", "تَوَقَّفْ"), ("ar", "إلغـاء الإشتراك"), ("ru", "хватит мне писать"), ("de", "Schreiben Sie mir nicht mehr")])
def test_an_opt_out_mid_flow_is_confirmed_once_and_never_an_answer(language: str, text: str) -> None:
    chat = _at_location(language)
    assert chat.send(text) == [chat.flow.texts["stopped"][language]]
    assert chat.conv.opted_out and "location" not in chat.conv.answers
    assert chat.send(text) == []  # confirmed once: a second stop is not answered
    assert chat.send("Berlin") == [] and "location" not in chat.conv.answers


def test_the_medication_question_is_no_opt_out() -> None:
    chat = _at_location("en")
    replies = chat.send("can I stop taking my medication before the operation?")
    assert not chat.conv.opted_out and chat.conv.status == "bot"
    assert replies[-1] == "Which country and city do you live in?" and "location" not in chat.conv.answers


def test_restart_after_an_opt_out_speaks_again() -> None:
    chat = _at_location("tr")
    chat.send("İPTAL")
    assert chat.send("başla")[0].startswith("Tekrar hoş geldiniz")
    assert not chat.conv.opted_out
