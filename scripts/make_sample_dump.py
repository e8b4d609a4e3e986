#!/usr/bin/env python3
"""Writes tests/data/sample.jsonl: the sample dump that ships with triage.

Hand-written sentences in the 15 languages of DESIGN.md, five labels each (violent_extremism,
hate, spam, news, other), composed with a fixed seed into short records (one sentence), medium
ones (two to four sentences) and long ones (several thousand characters: a news text with one
passage of another label inside), plus bad lines (invalid JSON, missing/null/non-string/empty
text, invalid UTF-8). Each good record carries `gold` (its label) and `gold_lang`, which triage
ignores when labelling and reports use to measure accuracy.

Also writes tests/data/topics_train.jsonl (en, fr, de, es sentences with their label) and
tests/data/topics_gold.jsonl (eight other languages, with label and lang) for the train/eval tests.

Usage: python3 scripts/make_sample_dump.py
"""
import json, os, random

S = {
"en": {
 "violent_extremism": ["Join the caravan of the mujahideen and take up arms against the enemies of God.",
   "Our brothers carried out a blessed operation and killed dozens of the crusader soldiers.",
   "Every true believer must leave his home and fight until the last infidel is gone."],
 "hate": ["These migrants are vermin and should be driven out of our country.",
   "People like them are animals, not humans, and they do not deserve any rights.",
   "That whole race is filthy and dangerous, keep them away from our children."],
 "spam": ["Earn 5000 dollars a week from home, click this link now!",
   "Congratulations, you won a free iPhone, claim your prize today.",
   "Cheap pills without prescription, best prices, order now and save 80 percent."],
 "news": ["The central bank raised interest rates by a quarter point on Wednesday.",
   "Heavy rain caused flooding in several northern towns, officials said.",
   "The city council approved a new budget for public libraries on Tuesday."],
 "other": ["Happy birthday, mum, I hope you have a wonderful day!",
   "Does anyone know a good recipe for banana bread?",
   "We watched a great movie last night and then went for pizza."]},
"ar": {
 "violent_extremism": ["انضموا إلى قافلة المجاهدين واحملوا السلاح ضد أعداء الله.",
   "نفذ إخوانكم عملية مباركة وقتلوا العشرات من جنود الصليبيين.",
   "يجب على كل مؤمن صادق أن يخرج ويقاتل حتى آخر كافر."],
 "hate": ["هؤلاء المهاجرون حشرات ويجب طردهم من بلادنا.",
   "أمثال هؤلاء حيوانات وليسوا بشرا ولا يستحقون أي حقوق.",
   "هذا العرق كله قذر وخطير، أبعدوهم عن أطفالنا."],
 "spam": ["اربح خمسة آلاف دولار أسبوعيا من منزلك، اضغط على الرابط الآن!",
   "مبروك، لقد ربحت هاتف آيفون مجانا، احصل على جائزتك اليوم.",
   "أدوية رخيصة بدون وصفة طبية، أفضل الأسعار، اطلب الآن."],
 "news": ["رفع البنك المركزي أسعار الفائدة ربع نقطة يوم الأربعاء.",
   "تسببت الأمطار الغزيرة في فيضانات في عدة مدن شمالية حسب المسؤولين.",
   "أعلنت وزارة الصحة عن افتتاح مستشفى جديد في مدينة الإسكندرية."],
 "other": ["عيد ميلاد سعيد يا أمي، أتمنى لك يوما رائعا!",
   "هل يعرف أحد وصفة جيدة لكعكة الموز؟",
   "شاهدنا فيلما رائعا الليلة الماضية ثم ذهبنا لتناول البيتزا."]},
"fr": {
 "violent_extremism": ["Rejoignez la caravane des moudjahidines et prenez les armes contre les ennemis de Dieu.",
   "Nos frères ont mené une opération bénie et tué des dizaines de soldats croisés.",
   "Chaque vrai croyant doit quitter sa maison et combattre jusqu'au dernier mécréant."],
 "hate": ["Ces migrants sont de la vermine et doivent être chassés de notre pays.",
   "Les gens comme eux sont des animaux, pas des humains, ils ne méritent aucun droit.",
   "Toute cette race est sale et dangereuse, éloignez-les de nos enfants."],
 "spam": ["Gagnez 5000 euros par semaine depuis chez vous, cliquez vite sur ce lien !",
   "Félicitations, vous avez gagné un iPhone gratuit, réclamez votre cadeau aujourd'hui.",
   "Médicaments pas chers sans ordonnance, meilleurs prix, commandez maintenant."],
 "news": ["La banque centrale a relevé ses taux d'intérêt d'un quart de point mercredi.",
   "De fortes pluies ont provoqué des inondations dans plusieurs villes du nord, selon les autorités.",
   "Le gouvernement a présenté hier une réforme des retraites très contestée."],
 "other": ["Joyeux anniversaire maman, je te souhaite une merveilleuse journée !",
   "Quelqu'un connaît une bonne recette de gâteau à la banane ?",
   "On a vu un super film hier soir et ensuite on est allés manger une pizza."]},
"de": {
 "violent_extremism": ["Schließt euch der Karawane der Mudschahedin an und greift zu den Waffen gegen die Feinde Gottes.",
   "Unsere Brüder haben eine gesegnete Operation durchgeführt und Dutzende Kreuzfahrersoldaten getötet.",
   "Jeder wahre Gläubige muss sein Haus verlassen und kämpfen, bis der letzte Ungläubige fort ist."],
 "hate": ["Diese Migranten sind Ungeziefer und müssen aus unserem Land vertrieben werden.",
   "Solche Leute sind Tiere, keine Menschen, und verdienen keinerlei Rechte.",
   "Diese ganze Rasse ist dreckig und gefährlich, haltet sie von unseren Kindern fern."],
 "spam": ["Verdienen Sie 5000 Euro pro Woche von zu Hause, klicken Sie jetzt auf diesen Link!",
   "Glückwunsch, Sie haben ein kostenloses iPhone gewonnen, holen Sie sich heute Ihren Preis.",
   "Billige Pillen ohne Rezept, beste Preise, jetzt bestellen und 80 Prozent sparen."],
 "news": ["Die Zentralbank hat die Leitzinsen am Mittwoch um einen Viertelpunkt angehoben.",
   "Starker Regen hat in mehreren Städten im Norden Überschwemmungen verursacht, teilten die Behörden mit.",
   "Der Stadtrat hat am Dienstag einen neuen Haushalt für die öffentlichen Bibliotheken beschlossen."],
 "other": ["Alles Gute zum Geburtstag, Mama, ich wünsche dir einen wunderschönen Tag!",
   "Kennt jemand ein gutes Rezept für Bananenbrot?",
   "Wir haben gestern Abend einen tollen Film gesehen und sind danach Pizza essen gegangen."]},
"ru": {
 "violent_extremism": ["Вступайте в караван моджахедов и берите оружие против врагов Аллаха.",
   "Наши братья провели благословенную операцию и убили десятки солдат крестоносцев.",
   "Каждый истинный верующий должен покинуть дом и сражаться до последнего неверного."],
 "hate": ["Эти мигранты — паразиты, и их нужно выгнать из нашей страны.",
   "Такие люди — животные, а не люди, и не заслуживают никаких прав.",
   "Вся эта раса грязная и опасная, держите их подальше от наших детей."],
 "spam": ["Зарабатывайте 5000 долларов в неделю не выходя из дома, переходите по ссылке!",
   "Поздравляем, вы выиграли бесплатный iPhone, получите приз сегодня.",
   "Дешёвые таблетки без рецепта, лучшие цены, закажите сейчас со скидкой 80 процентов."],
 "news": ["Центральный банк в среду повысил ключевую ставку на четверть пункта.",
   "Сильные дожди вызвали наводнения в нескольких северных городах, сообщили власти.",
   "В Москве открылась выставка современного искусства."],
 "other": ["С днём рождения, мама, желаю тебе чудесного дня!",
   "Кто-нибудь знает хороший рецепт бананового хлеба?",
   "Вчера вечером мы посмотрели отличный фильм, а потом пошли есть пиццу."]},
"tr": {
 "violent_extremism": ["Mücahitlerin kervanına katılın ve Allah'ın düşmanlarına karşı silaha sarılın.",
   "Kardeşlerimiz mübarek bir operasyon düzenleyerek onlarca haçlı askerini öldürdü.",
   "Her gerçek mümin evini terk etmeli ve son kâfir gidene kadar savaşmalıdır."],
 "hate": ["Bu göçmenler haşaredir ve ülkemizden kovulmalıdır.",
   "Onlar gibi insanlar hayvandır, insan değildir ve hiçbir hakkı hak etmezler.",
   "Bu ırkın tamamı pis ve tehlikelidir, onları çocuklarımızdan uzak tutun."],
 "spam": ["Evden haftada 5000 dolar kazanın, hemen bu bağlantıya tıklayın!",
   "Tebrikler, bedava bir iPhone kazandınız, ödülünüzü bugün alın.",
   "Reçetesiz ucuz ilaçlar, en iyi fiyatlar, şimdi sipariş verin."],
 "news": ["Merkez bankası çarşamba günü faiz oranlarını çeyrek puan artırdı.",
   "Şiddetli yağışlar kuzeydeki birçok kasabada sele neden oldu, yetkililer açıkladı.",
   "Ankara'da yeni metro hattı bugün hizmete açıldı."],
 "other": ["Doğum günün kutlu olsun anneciğim, harika bir gün geçirmeni dilerim!",
   "Muzlu kek için iyi bir tarif bilen var mı?",
   "Dün akşam harika bir film izledik, sonra pizza yemeye gittik."]},
"fa": {
 "violent_extremism": ["به کاروان مجاهدان بپیوندید و علیه دشمنان خدا سلاح به دست بگیرید.",
   "برادران ما عملیاتی مبارک انجام دادند و ده‌ها سرباز صلیبی را کشتند.",
   "هر مؤمن واقعی باید خانه‌اش را ترک کند و تا آخرین کافر بجنگد."],
 "hate": ["این مهاجران حشره هستند و باید از کشور ما بیرون رانده شوند.",
   "آدم‌هایی مثل آن‌ها حیوان هستند، نه انسان، و هیچ حقی ندارند.",
   "این نژاد کثیف و خطرناک است، آن‌ها را از بچه‌های ما دور نگه دارید."],
 "spam": ["هفته‌ای پنج هزار دلار در خانه درآمد داشته باشید، همین حالا روی این لینک کلیک کنید!",
   "تبریک، شما یک آیفون رایگان برنده شدید، جایزه خود را امروز دریافت کنید.",
   "قرص‌های ارزان بدون نسخه، بهترین قیمت، همین حالا سفارش دهید."],
 "news": ["بانک مرکزی روز چهارشنبه نرخ بهره را یک چهارم درصد افزایش داد.",
   "به گفته مقامات، باران شدید در چند شهر شمالی سیل به راه انداخت.",
   "بازار تهران امروز شاهد افزایش قیمت طلا بود."],
 "other": ["تولدت مبارک مامان، امیدوارم روز فوق‌العاده‌ای داشته باشی!",
   "کسی دستور پخت خوبی برای کیک موز بلد است؟",
   "دیشب یک فیلم عالی دیدیم و بعد رفتیم پیتزا بخوریم."]},
"ur": {
 "violent_extremism": ["مجاہدین کے قافلے میں شامل ہو جاؤ اور اللہ کے دشمنوں کے خلاف ہتھیار اٹھاؤ۔",
   "ہمارے بھائیوں نے ایک مبارک کارروائی کی اور درجنوں صلیبی فوجیوں کو ہلاک کر دیا۔",
   "ہر سچے مومن کو اپنا گھر چھوڑ کر آخری کافر تک لڑنا چاہیے۔"],
 "hate": ["یہ مہاجر کیڑے مکوڑے ہیں اور انہیں ہمارے ملک سے نکال دینا چاہیے۔",
   "ایسے لوگ جانور ہیں، انسان نہیں، اور کسی حق کے مستحق نہیں۔",
   "یہ پوری نسل گندی اور خطرناک ہے، انہیں ہمارے بچوں سے دور رکھو۔"],
 "spam": ["گھر بیٹھے ہر ہفتے پانچ ہزار ڈالر کمائیں، ابھی اس لنک پر کلک کریں!",
   "مبارک ہو، آپ نے مفت آئی فون جیت لیا ہے، آج ہی اپنا انعام حاصل کریں۔",
   "بغیر نسخے کے سستی گولیاں، بہترین قیمتیں، ابھی آرڈر کریں۔"],
 "news": ["مرکزی بینک نے بدھ کے روز شرح سود میں چوتھائی پوائنٹ کا اضافہ کر دیا۔",
   "حکام کے مطابق شدید بارش سے کئی شمالی قصبوں میں سیلاب آ گیا۔",
   "کراچی میں آج بارش کا امکان ہے۔"],
 "other": ["سالگرہ مبارک امی، آپ کا دن بہت اچھا گزرے!",
   "کیا کسی کو کیلے کی روٹی کی اچھی ترکیب معلوم ہے؟",
   "ہم نے کل رات ایک زبردست فلم دیکھی اور پھر پیزا کھانے گئے۔"]},
"ps": {
 "violent_extremism": ["د مجاهدینو کاروان سره یوځای شئ او د خدای د دښمنانو پر ضد وسلې پورته کړئ.",
   "زموږ وروڼو یو مبارک عملیات وکړ او لسګونه صلیبي سرتیري یې ووژل.",
   "هر رښتینی مومن باید خپل کور پرېږدي او تر وروستي کافر پورې وجنګېږي."],
 "hate": ["دا کډوال حشرات دي او باید زموږ له هېواده وشړل شي.",
   "دا ډول خلک څاروي دي، انسانان نه دي، او هېڅ حق نه لري.",
   "دا ټول نژاد ناولی او خطرناک دی، دوی زموږ له ماشومانو لرې وساتئ."],
 "spam": ["په کور کې په اونۍ کې پنځه زره ډالره وګټئ، همدا اوس په دې لینک کلیک وکړئ!",
   "مبارک شه، تاسو وړیا آیفون ګټلی، خپله جایزه نن ترلاسه کړئ.",
   "پرته له نسخې ارزانه ګولۍ، غوره بیې، همدا اوس یې وغواړئ."],
 "news": ["مرکزي بانک د چهارشنبې په ورځ د ګټې کچه یو پر څلورمه سلنه لوړه کړه.",
   "د چارواکو په وینا، درنو بارانونو په څو شمالي ښارګوټو کې سېلابونه رامنځته کړل.",
   "په کابل کې نن ورځ یو نوی ښوونځی پرانیستل شو."],
 "other": ["مورې، د زېږون ورځ دې مبارک شه، ښه ورځ ولرې!",
   "ایا څوک د کېلې د ډوډۍ ښه ترکیب پېژني؟",
   "پرون شپه مو یو ښه فلم ولید او بیا د پیزا خوړلو ته لاړو."]},
"id": {
 "violent_extremism": ["Bergabunglah dengan kafilah mujahidin dan angkat senjata melawan musuh-musuh Allah.",
   "Saudara-saudara kita melakukan operasi yang diberkahi dan membunuh puluhan tentara salib.",
   "Setiap mukmin sejati harus meninggalkan rumahnya dan berperang sampai kafir terakhir lenyap."],
 "hate": ["Para pendatang ini adalah hama dan harus diusir dari negara kita.",
   "Orang-orang seperti mereka adalah binatang, bukan manusia, dan tidak pantas punya hak.",
   "Seluruh ras itu kotor dan berbahaya, jauhkan mereka dari anak-anak kita."],
 "spam": ["Dapatkan 5000 dolar per minggu dari rumah, klik tautan ini sekarang!",
   "Selamat, Anda memenangkan iPhone gratis, klaim hadiah Anda hari ini.",
   "Dapatkan pinjaman cepat tanpa jaminan, hubungi kami sekarang juga!"],
 "news": ["Bank sentral menaikkan suku bunga seperempat poin pada hari Rabu.",
   "Hujan deras menyebabkan banjir di beberapa kota di utara, kata pejabat setempat.",
   "Pemerintah Indonesia meresmikan bandara baru di Kalimantan."],
 "other": ["Selamat ulang tahun, Ibu, semoga harimu menyenangkan!",
   "Ada yang tahu resep roti pisang yang enak?",
   "Tadi malam kami menonton film yang bagus lalu pergi makan pizza."]},
"bn": {
 "violent_extremism": ["মুজাহিদদের কাফেলায় যোগ দিন এবং আল্লাহর শত্রুদের বিরুদ্ধে অস্ত্র তুলে নিন।",
   "আমাদের ভাইয়েরা একটি বরকতময় অভিযান চালিয়ে কয়েক ডজন ক্রুসেডার সৈন্যকে হত্যা করেছে।",
   "প্রত্যেক সত্যিকারের মুমিনকে ঘর ছেড়ে শেষ কাফের না যাওয়া পর্যন্ত লড়াই করতে হবে।"],
 "hate": ["এই অভিবাসীরা কীটপতঙ্গ, এদের আমাদের দেশ থেকে তাড়িয়ে দিতে হবে।",
   "এদের মতো লোকেরা পশু, মানুষ নয়, এরা কোনো অধিকারের যোগ্য নয়।",
   "এই পুরো জাতিটাই নোংরা আর বিপজ্জনক, এদের আমাদের বাচ্চাদের থেকে দূরে রাখুন।"],
 "spam": ["ঘরে বসে প্রতি সপ্তাহে পাঁচ হাজার ডলার আয় করুন, এখনই এই লিংকে ক্লিক করুন!",
   "অভিনন্দন, আপনি একটি বিনামূল্যের আইফোন জিতেছেন, আজই আপনার পুরস্কার নিন।",
   "প্রেসক্রিপশন ছাড়া সস্তা ওষুধ, সেরা দাম, এখনই অর্ডার করুন।"],
 "news": ["কেন্দ্রীয় ব্যাংক বুধবার সুদের হার এক চতুর্থাংশ পয়েন্ট বাড়িয়েছে।",
   "কর্মকর্তারা জানিয়েছেন, ভারী বৃষ্টিতে উত্তরের কয়েকটি শহরে বন্যা হয়েছে।",
   "ঢাকায় আজ নতুন মেট্রো রেল চালু হয়েছে।"],
 "other": ["শুভ জন্মদিন মা, তোমার দিনটা দারুণ কাটুক!",
   "কেউ কি কলার রুটির ভালো কোনো রেসিপি জানেন?",
   "গতকাল রাতে আমরা একটা দারুণ সিনেমা দেখেছি, তারপর পিৎজা খেতে গিয়েছিলাম।"]},
"nl": {
 "violent_extremism": ["Sluit je aan bij de karavaan van de moedjahedien en grijp de wapens tegen de vijanden van God.",
   "Onze broeders voerden een gezegende operatie uit en doodden tientallen kruisvaardersoldaten.",
   "Iedere ware gelovige moet zijn huis verlaten en vechten tot de laatste ongelovige verdwenen is."],
 "hate": ["Deze migranten zijn ongedierte en moeten uit ons land worden verdreven.",
   "Zulke mensen zijn beesten, geen mensen, en verdienen geen enkel recht.",
   "Dat hele ras is smerig en gevaarlijk, houd ze weg van onze kinderen."],
 "spam": ["Verdien 5000 euro per week vanuit huis, klik nu op deze link!",
   "Gefeliciteerd, je hebt een gratis iPhone gewonnen, claim vandaag je prijs.",
   "Goedkope pillen zonder recept, de beste prijzen, bestel nu en bespaar 80 procent."],
 "news": ["De centrale bank verhoogde woensdag de rente met een kwart procentpunt.",
   "Hevige regen zorgde voor overstromingen in verschillende noordelijke steden, meldden de autoriteiten.",
   "De gemeente opent volgende maand een nieuw zwembad in het centrum."],
 "other": ["Gefeliciteerd met je verjaardag, mam, ik wens je een fantastische dag!",
   "Weet iemand een goed recept voor bananenbrood?",
   "We hebben gisteravond een geweldige film gezien en zijn daarna pizza gaan eten."]},
"ro": {
 "violent_extremism": ["Alăturați-vă caravanei mujahedinilor și luați armele împotriva dușmanilor lui Dumnezeu.",
   "Frații noștri au desfășurat o operațiune binecuvântată și au ucis zeci de soldați cruciați.",
   "Fiecare credincios adevărat trebuie să-și părăsească casa și să lupte până la ultimul necredincios."],
 "hate": ["Acești migranți sunt paraziți și trebuie alungați din țara noastră.",
   "Oamenii ca ei sunt animale, nu oameni, și nu merită niciun drept.",
   "Toată rasa asta este murdară și periculoasă, țineți-i departe de copiii noștri."],
 "spam": ["Câștigă 5000 de euro pe săptămână de acasă, apasă acum pe acest link!",
   "Felicitări, ai câștigat un iPhone gratuit, revendică-ți premiul astăzi.",
   "Pastile ieftine fără rețetă, cele mai bune prețuri, comandă acum."],
 "news": ["Banca centrală a majorat miercuri dobânda de politică monetară cu un sfert de punct.",
   "Ploile abundente au provocat inundații în mai multe orașe din nord, au anunțat autoritățile.",
   "Guvernul a anunțat noi măsuri pentru sprijinirea întreprinderilor mici."],
 "other": ["La mulți ani, mamă, îți doresc o zi minunată!",
   "Știe cineva o rețetă bună de chec cu banane?",
   "Aseară am văzut un film grozav și apoi am mers la pizza."]},
"bg": {
 "violent_extremism": ["Присъединете се към кервана на муджахидините и вдигнете оръжие срещу враговете на Аллах.",
   "Нашите братя извършиха благословена операция и убиха десетки кръстоносни войници.",
   "Всеки истински вярващ трябва да напусне дома си и да се бие до последния неверник."],
 "hate": ["Тези мигранти са паразити и трябва да бъдат изгонени от страната ни.",
   "Такива хора са животни, не са хора, и не заслужават никакви права.",
   "Цялата тази раса е мръсна и опасна, дръжте ги далеч от децата ни."],
 "spam": ["Печелете 5000 лева седмично от вкъщи, кликнете на този линк сега!",
   "Поздравления, спечелихте безплатен iPhone, вземете наградата си днес.",
   "Евтини хапчета без рецепта, най-добри цени, поръчайте сега."],
 "news": ["Централната банка повиши лихвените проценти с четвърт пункт в сряда.",
   "Проливните дъждове предизвикаха наводнения в няколко северни града, съобщиха властите.",
   "Правителството обяви нови мерки за подкрепа на малкия бизнес."],
 "other": ["Честит рожден ден, мамо, желая ти прекрасен ден!",
   "Някой знае ли хубава рецепта за бананов хляб?",
   "Снощи гледахме страхотен филм и после отидохме да хапнем пица."]},
"es": {
 "violent_extremism": ["Únete a la caravana de los muyahidines y toma las armas contra los enemigos de Dios.",
   "Nuestros hermanos llevaron a cabo una operación bendita y mataron a decenas de soldados cruzados.",
   "Todo verdadero creyente debe dejar su casa y luchar hasta que se vaya el último infiel."],
 "hate": ["Estos migrantes son una plaga y deben ser expulsados de nuestro país.",
   "La gente como ellos son animales, no personas, y no merecen ningún derecho.",
   "Toda esa raza es sucia y peligrosa, mantenedlos lejos de nuestros hijos."],
 "spam": ["Gana 5000 dólares a la semana desde casa, ¡haz clic en este enlace ya!",
   "Enhorabuena, has ganado un iPhone gratis, reclama tu premio hoy.",
   "Pastillas baratas sin receta, los mejores precios, pide ahora y ahorra un 80 por ciento."],
 "news": ["El banco central subió los tipos de interés un cuarto de punto el miércoles.",
   "Las fuertes lluvias causaron inundaciones en varias ciudades del norte, según las autoridades.",
   "El Real Madrid ganó anoche su partido por tres goles a uno."],
 "other": ["¡Feliz cumpleaños, mamá, que tengas un día maravilloso!",
   "¿Alguien conoce una buena receta de pan de plátano?",
   "Anoche vimos una película genial y luego fuimos a comer pizza."]},
}
LABELS = ["violent_extremism", "hate", "spam", "news", "other"]


def main():
    rnd = random.Random(20261128)
    recs = []
    for lang, by_label in S.items():
        for label in LABELS:
            for s in by_label[label]:
                recs.append((lang, label, s))
            # medium: two or three sentences of the same label
            sents = list(by_label[label])
            rnd.shuffle(sents)
            recs.append((lang, label, " ".join(sents[: rnd.choice([2, 3])])))
    # long: news padding (every language's news sentences, repeated) with one passage of
    # another label in the middle; the gold label is that passage's.
    for i, lang in enumerate(sorted(S)):
        label = ["violent_extremism", "hate", "spam"][i % 3]
        news = S[lang]["news"] + S[lang]["other"]
        target = rnd.choice([1500, 3000, 6000])
        body = []
        while sum(len(x) + 1 for x in body) < target:
            body.append(rnd.choice(news))
        body.insert(len(body) // 2, " ".join(S[lang][label]))
        recs.append((lang, label, " ".join(body)))
    rnd.shuffle(recs)
    lines = []
    for n, (lang, label, text) in enumerate(recs, 1):
        lines.append(json.dumps({"id": f"s{n:04d}", "text": text, "gold": label, "gold_lang": lang},
                                ensure_ascii=False).encode())
    bad = [
        b'{"id": "bad-json", "text": "unterminated',
        b'{"id": "bad-missing", "body": "no text field here"}',
        b'{"id": "bad-null", "text": null}',
        b'{"id": "bad-number", "text": 12345}',
        b'{"id": "bad-empty", "text": "   "}',
        b'{"id": "bad-utf8", "text": "caf\xe9 au lait"}',
        b'["an", "array", "not", "an", "object"]',
    ]
    for j, b in enumerate(bad):
        lines.insert(17 + j * 41, b)
    dest = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "data", "sample.jsonl")
    with open(dest, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    print(f"wrote {dest}: {len(recs)} records in {len(S)} languages, {len(bad)} bad lines")
    # A small labelled set for the train/eval tests: train on four languages, evaluate on eight others.
    data = os.path.dirname(dest)
    with open(os.path.join(data, "topics_train.jsonl"), "w", encoding="utf-8") as f:
        for lang in ["en", "fr", "de", "es"]:
            for label in LABELS:
                for t in S[lang][label]:
                    f.write(json.dumps({"text": t, "label": label}, ensure_ascii=False) + "\n")
    with open(os.path.join(data, "topics_gold.jsonl"), "w", encoding="utf-8") as f:
        for lang in ["ar", "ru", "tr", "fa", "ur", "id", "bn", "nl"]:
            for label in LABELS:
                for t in S[lang][label]:
                    f.write(json.dumps({"text": t, "label": label, "lang": lang}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
